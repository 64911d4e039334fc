"""A simulation-only Verilog top around the accelerator: the stream source and sink in the HDL.

The source plays input beats from ``beats.hex`` (one hex word a line, in the simulator's working
folder) and the sink writes every accepted output beat to ``words.hex``; ``done`` rises once
``count`` beats came out. Both keep the stream rules (valid holds its payload until the handshake,
a beat moves on a rising edge that sees valid and ready high), back to back by default: the next
input beat is on the bus the cycle after a handshake and ready stays high. ``gap`` and ``stall``
(probability * 65536) insert 1-4 cycles without valid before an input beat and hold ready low for
1-4 cycles of a waiting output beat, drawn from two xorshift generators seeded by ``seed``; source
and sink are independent, so back-pressure meets a design that already took the next input.

Why in the HDL: a cocotb source and sink wake Python several times a step (tens of cycles), which
made the ECG test set 4x slower than the simulation itself; here Python waits for ``done`` only.
The files are read and written beat by beat ($fscanf, $fwrite), so a stream has no length limit.
"""

from __future__ import annotations

HARNESS = "brf_stream_harness"
BEATS_FILE, WORDS_FILE = "beats.hex", "words.hex"

_TEMPLATE = r"""// Simulation-only harness (brf_hw.hw.harness): stream source from {beats}, sink into {words}.
// Only the ports are visible to cocotb (built with --no-public-flat-rw, see HIDDEN_INSIDE).
module {name} (
  input clk /*verilator public_flat_rw*/,
  input rst /*verilator public_flat_rw*/,
  input [31:0] count /*verilator public_flat_rw*/,
  input [15:0] gap /*verilator public_flat_rw*/,
  input [15:0] stall /*verilator public_flat_rw*/,
  input [31:0] seed /*verilator public_flat_rw*/,
  output reg done /*verilator public_flat_rw*/,
  // cycles without an input beat on offer while one was due (gaps), and with an output beat held
  // back (stalls): a test can see that the back-pressure it asked for happened
  output reg [31:0] gap_cycles /*verilator public_flat_rw*/,
  output reg [31:0] stall_cycles /*verilator public_flat_rw*/
);
  reg in_valid;
  reg [{iw}-1:0] in_payload;
  wire in_ready;
  wire out_valid;
  wire [{ow}-1:0] out_payload;
  wire out_ready;

  // The accelerator's reset is a register, not the top-level input: under Verilator, logic that
  // depends on a top-level input is evaluated at both edges of every clock (its "ico" region), and
  // every next-state expression of the accelerator depends on rst.
  reg acc_rst = 1;
  always @(posedge clk) acc_rst <= rst;

  {top} acc (
    .clk(clk), .rst(acc_rst),
    .inp__valid(in_valid), .inp__ready(in_ready), .inp__payload(in_payload),
    .out__valid(out_valid), .out__ready(out_ready), .out__payload(out_payload)
  );

  // xorshift32 (never seeded with 0)
  function [31:0] next_random(input [31:0] x);
    reg [31:0] y;
    begin
      y = x ^ (x << 13);
      y = y ^ (y >> 17);
      next_random = y ^ (y << 5);
    end
  endfunction

  integer beats_fd, words_fd, got;
  reg opened;
  reg [31:0] sent, received, src_random, snk_random;
  reg [2:0] gap_left, stall_left;
  reg gapped;  // the next input beat has had its gap
  reg [{iw}-1:0] beat;

  assign out_ready = stall_left == 0;

  // The harness's own state is assigned blocking (read in this block only); what the accelerator
  // reads (in_valid, in_payload, stall_left through out_ready) is assigned non-blocking, so it
  // changes after every block has seen the values before the edge.
  always @(posedge clk) begin
    if (acc_rst) begin
      in_valid <= 0;
      stall_left <= 0;
      done <= 0;
      gap_cycles <= 0;
      stall_cycles <= 0;
      opened = 0;
      sent = 0;
      received = 0;
      gap_left = 0;
      gapped = 0;
      src_random = seed | 1;
      snk_random = (seed ^ 32'h9e3779b9) | 1;
    end else if (!opened) begin
      beats_fd = $fopen("{beats}", "r");
      words_fd = $fopen("{words}", "w");
      opened = 1;
    end else if (!done) begin
      // source: once the bus is free, the next beat (after 1-4 idle cycles where a gap is drawn)
      if (!in_valid || in_ready) begin
        if (in_valid) sent = sent + 1;
        in_valid <= 0;
        if (gap_left != 0) begin
          gap_left = gap_left - 1;
        end else if (sent < count) begin
          src_random = next_random(src_random);
          if (!gapped && src_random[15:0] < gap) begin
            gapped = 1;
            gap_left = {{1'b0, src_random[17:16]}};
            gap_cycles <= gap_cycles + 1 + src_random[17:16];
          end else begin
            got = $fscanf(beats_fd, "%h\n", beat);
            if (got != 1) begin
              $display("ERROR: {beats} ends after %0d of %0d beats", sent, count);
              $finish;
            end
            gapped = 0;
            in_payload <= beat;
            in_valid <= 1;
          end
        end
      end
      // sink: after each output beat, a stall for the next one (1-4 cycles of it waiting) may be drawn
      if (out_valid && out_ready) begin
        $fwrite(words_fd, "%h\n", out_payload);
        received = received + 1;
        snk_random = next_random(snk_random);
        stall_left <= snk_random[15:0] < stall ? 3'd1 + {{1'b0, snk_random[17:16]}} : 3'd0;
        if (received == count) begin
          $fclose(words_fd);
          $fclose(beats_fd);
          done <= 1;
        end
      end else if (out_valid && stall_left != 0) begin
        stall_left <= stall_left - 1;
        stall_cycles <= stall_cycles + 1;
      end
    end
  end
endmodule
"""


# Verilator: cocotb's build makes every signal writable from VPI (--public-flat-rw), so Verilator
# must re-evaluate all combinational logic at every edge in case Python changed something: 2-3x the
# cost of the design itself. Python needs the harness's ports only (marked public in the Verilog).
HIDDEN_INSIDE = ["--no-public-flat-rw"]


def harness_verilog(top: str, input_width: int, output_width: int) -> str:
    """The harness's Verilog around ``top`` with its input and output payload widths."""
    return _TEMPLATE.format(name=HARNESS, top=top, iw=input_width, ow=output_width, beats=BEATS_FILE,
                            words=WORDS_FILE)
