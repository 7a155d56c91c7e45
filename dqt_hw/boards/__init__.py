"""Board builds and the host link: an accelerator with its model on an FPGA board, reached over
the board's USB serial port (docs/boards.md).

Gateware: `uart` (8N1 receiver and transmitter), `bridge` (the UART-to-Wishbone bridge of the
host protocol), `clocks` (PLL settings and the reset), `top` (`BoardTop`, the bitstream's top
level). Host side: `protocol` (frames, CRC), `link` (the driver's transport over a byte port,
a pyserial port included). Boards: `catalog` (the accelerator is sized to a model by
`dqt_hw.accel.sizing`).
"""
