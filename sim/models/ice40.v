// Simulation models of the iCE40 primitives a dqt-hw board top instantiates (sim/board.py).
// Only the configurations the top uses are modelled; any other stops the simulation.

// A plain I/O pin: PIN_TYPE 6'b000001 (input) or 6'b101001 (tristate output, unregistered).
module SB_IO (inout PACKAGE_PIN, input LATCH_INPUT_VALUE, input CLOCK_ENABLE,
              input INPUT_CLK, input OUTPUT_CLK, input OUTPUT_ENABLE,
              input D_OUT_0, input D_OUT_1, output D_IN_0, output D_IN_1);
  parameter [5:0] PIN_TYPE = 6'b000000;
  parameter [0:0] PULLUP = 1'b0;
  parameter [0:0] NEG_TRIGGER = 1'b0;
  parameter IO_STANDARD = "SB_LVCMOS";
  initial if (PIN_TYPE != 6'b000001 && PIN_TYPE != 6'b101001) begin
    $display("SB_IO model: PIN_TYPE %b is not modelled", PIN_TYPE);
    $finish;
  end
  assign D_IN_0 = PACKAGE_PIN;
  assign D_IN_1 = 1'b0;
  assign PACKAGE_PIN = (PIN_TYPE[5:2] == 4'b1010 && OUTPUT_ENABLE) ? D_OUT_0 : 1'bz;
endmodule

// A global-buffer input pin.
module SB_GB_IO (inout PACKAGE_PIN, input LATCH_INPUT_VALUE, input CLOCK_ENABLE,
                 input INPUT_CLK, input OUTPUT_CLK, input OUTPUT_ENABLE,
                 input D_OUT_0, input D_OUT_1, output D_IN_0, output D_IN_1,
                 output GLOBAL_BUFFER_OUTPUT);
  parameter [5:0] PIN_TYPE = 6'b000001;
  parameter [0:0] PULLUP = 1'b0;
  parameter [0:0] NEG_TRIGGER = 1'b0;
  parameter IO_STANDARD = "SB_LVCMOS";
  assign GLOBAL_BUFFER_OUTPUT = PACKAGE_PIN;
  assign D_IN_0 = PACKAGE_PIN;
  assign D_IN_1 = 1'b0;
endmodule

// The PLL: its output is its input (the bench drives the oscillator pin at the design clock,
// whose frequency the PLL settings are checked for in tests/test_boards_clocks.py); LOCK
// rises after 16 reference cycles.
module SB_PLL40_PAD (input PACKAGEPIN, output PLLOUTCORE, output PLLOUTGLOBAL,
                     input EXTFEEDBACK, input [7:0] DYNAMICDELAY, output LOCK,
                     input BYPASS, input RESETB, input LATCHINPUTVALUE,
                     output SDO, input SDI, input SCLK);
  parameter FEEDBACK_PATH = "SIMPLE";
  parameter [3:0] DIVR = 0;
  parameter [6:0] DIVF = 0;
  parameter [2:0] DIVQ = 0;
  parameter [2:0] FILTER_RANGE = 0;
  reg [4:0] count = 0;
  always @(posedge PACKAGEPIN) if (!count[4]) count <= count + 1;
  assign PLLOUTCORE = PACKAGEPIN;
  assign PLLOUTGLOBAL = PACKAGEPIN;
  assign LOCK = count[4];
endmodule

// A single-port 16K x 16 SPRAM (the UP5K has four): registered read, a write enable per
// nibble (MASKWREN). Contents start at zero (the hardware's are undefined: the host loads
// them); after a write DATAOUT keeps its value (the hardware's is undefined).
module SB_SPRAM256KA (input [13:0] ADDRESS, input [15:0] DATAIN, input [3:0] MASKWREN,
                      input WREN, input CHIPSELECT, input CLOCK, input STANDBY, input SLEEP,
                      input POWEROFF, output reg [15:0] DATAOUT);
  reg [15:0] mem [0:16383];
  integer i;
  initial begin
    for (i = 0; i < 16384; i = i + 1) mem[i] = 16'h0;
    DATAOUT = 16'h0;
  end
  always @(posedge CLOCK)
    if (CHIPSELECT && !STANDBY && !SLEEP && POWEROFF) begin
      if (!WREN)
        DATAOUT <= mem[ADDRESS];
      else begin
        if (MASKWREN[0]) mem[ADDRESS][3:0] <= DATAIN[3:0];
        if (MASKWREN[1]) mem[ADDRESS][7:4] <= DATAIN[7:4];
        if (MASKWREN[2]) mem[ADDRESS][11:8] <= DATAIN[11:8];
        if (MASKWREN[3]) mem[ADDRESS][15:12] <= DATAIN[15:12];
      end
    end
endmodule
