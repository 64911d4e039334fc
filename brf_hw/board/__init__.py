"""The accelerator on a board: UART (``uart``), the link protocol (``protocol``, the one
definition the RTL framing and the host share), framing logic (``framing``), the board top
(``top``) and the boards themselves (``platforms``). Build with ``brf-hw build``, talk
to it with ``brf-hw host``."""
