"""The Softmax Visualizer: an interactive page (``fastsoftmax viz``) and a
terminal chart (``fastsoftmax show``), computed by fastsoftmax itself.

``compute`` holds the numbers, ``server`` the loopback web server and JSON
API, ``cli`` the two subcommands, ``static/`` the page (served from the
installed package: no CDN, no network).
"""
