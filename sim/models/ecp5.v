// Simulation models of the ECP5 primitives a dqt-hw board top instantiates (sim/board.py).

module IB (input I, output O);
  assign O = I;
endmodule

module OBZ (input I, input T, output O);
  assign O = T ? 1'bz : I;
endmodule

// The PLL: its output is its input (the bench drives the oscillator pin at the design clock,
// whose frequency the PLL settings are checked for in tests/test_boards_clocks.py); LOCK
// rises after 16 reference cycles.
module EHXPLLL (input CLKI, input CLKFB, input PHASESEL1, input PHASESEL0, input PHASEDIR,
                input PHASESTEP, input PHASELOADREG, input STDBY, input PLLWAKESYNC,
                input RST, input ENCLKOP, input ENCLKOS, input ENCLKOS2, input ENCLKOS3,
                output CLKOP, output CLKOS, output CLKOS2, output CLKOS3, output LOCK,
                output INTLOCK, output REFCLK, output CLKINTFB);
  parameter CLKI_DIV = 1;
  parameter CLKFB_DIV = 1;
  parameter CLKOP_DIV = 8;
  parameter CLKOP_CPHASE = 0;
  parameter CLKOP_FPHASE = 0;
  parameter CLKOP_ENABLE = "ENABLED";
  parameter FEEDBK_PATH = "CLKOP";
  parameter PLLRST_ENA = "DISABLED";
  parameter INTFB_WAKE = "DISABLED";
  parameter STDBY_ENABLE = "DISABLED";
  parameter DPHASE_SOURCE = "DISABLED";
  parameter OUTDIVIDER_MUXA = "DIVA";
  parameter OUTDIVIDER_MUXB = "DIVB";
  parameter OUTDIVIDER_MUXC = "DIVC";
  parameter OUTDIVIDER_MUXD = "DIVD";
  reg [4:0] count = 0;
  always @(posedge CLKI) if (!count[4]) count <= count + 1;
  assign CLKOP = CLKI;
  assign LOCK = count[4];
  assign CLKOS = 1'b0; assign CLKOS2 = 1'b0; assign CLKOS3 = 1'b0;
  assign INTLOCK = LOCK; assign REFCLK = CLKI; assign CLKINTFB = 1'b0;
endmodule
