"""CI: fail a run that collected too few tests or had a failure.

usage: python .ci/check-junit.py JUNIT_XML MIN_TESTS LABEL

pytest exits 5 when it collects nothing, and the scripts stop on any non-zero
code; this also catches a collection that silently shrank.
"""

import sys
import xml.etree.ElementTree as ET

path, min_tests, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
root = ET.parse(path).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
tests = int(suite.get("tests"))
failed = int(suite.get("failures")) + int(suite.get("errors"))
skipped = int(suite.get("skipped"))
print(f"{label}: {tests - failed - skipped} passed, {failed} failed, {skipped} skipped")
if tests < min_tests or failed:
    sys.exit(f"{label}: expected at least {min_tests} tests and no failures, got {tests}")
