"""The roofline model: byte and FLOP formulas against hand counts, convolutions against FlopCounterMode."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from swiftcuda.inference.padding import Padding
from swiftcuda.model import SwiftNet
from swiftcuda.optimize import PrepareOptions, prepare
from tools import roofline as rl


def _tiny(objects: int = 2, memory_frames: int = 1, capacity: int | None = None) -> rl.Scenario:
    # 30x45 pads to 32x48: a 2x3 grid, P = 6; k = 6 - int(6 * 0.9) = 1.
    return rl.Scenario("r18", objects, memory_frames, height=30, width=45, capacity=capacity)


def test_scenario_shapes_at_480p():
    one = rl.Scenario("r18", 1, 1)
    assert one.padded == (480, 864) and one.grid == (30, 54) and one.pixels == 1620
    assert one.novel == 162 and one.long_term == 1620 and one.read_entries == 3240
    assert rl.Scenario("r50", 5, 20).long_term == 1620 + 19 * 162
    full = rl.Scenario("r18", 1, 0)
    assert full.long_term == 16384 and full.read_entries == 18004 and full.at_capacity


def test_memory_read_formula_by_hand():
    s = _tiny()  # O = 2, Ck = 32, Cv = 128, P = 6, N = 6 + 6 = 12
    assert (s.pixels, s.read_entries) == (6, 12)
    cost = rl.memory_read_cost(s, "fp16")
    # keys+values 2 objects x 160 x 12, the shared query 160 x 6 once, the output 2 x 256 x 6; int32 lengths.
    assert cost.bytes == 2 * (2 * 160 * 12 + 160 * 6 + 2 * 256 * 6) + 4 * 2 == 15752
    assert cost.tensor_flops == 2 * 2 * 160 * 12 * 6 == 46080
    assert cost.sfu_ops == 144 and cost.alu_ops == 4 * 144
    r = rl.roofline(cost, rl.H100_SXM)
    assert r.bound == "memory"
    assert r.time_s == pytest.approx(15752 / 3.35e12, rel=1e-12)
    assert r.tensor_s == pytest.approx(46080 / 989e12, rel=1e-12)
    # float32: twice the bytes, and the IEEE dots run on the FP32 pipe (one FMA per 2 FLOPs).
    fp32 = rl.roofline(rl.memory_read_cost(s, "fp32"), rl.H100_SXM)
    assert fp32.memory_s == pytest.approx((4 * 7872 + 8) / 3.35e12)
    assert fp32.tensor_s == 0.0 and fp32.alu_s == pytest.approx((576 + 46080 / 2) / 33.5e12)
    assert rl.roofline(cost, rl.H200_SXM).time_s == pytest.approx(15752 / 4.8e12)


def test_compute_bound_read_at_capacity():
    cost = rl.memory_read_cost(rl.Scenario("r18", 1, 0), "fp16")
    assert cost.tensor_flops == 2 * 160 * 18004 * 1620
    r = rl.roofline(cost, rl.H100_SXM)
    assert r.bound == "tensor" and r.time_s == pytest.approx(cost.tensor_flops / 989e12)
    assert rl.arithmetic_intensity(cost) > 989e12 / 3.35e12  # right of the ridge point


def test_update_formulas_by_hand():
    s = _tiny(memory_frames=3)  # L = 6 + 2 updates x 1 entry
    assert (s.novel, s.long_term) == (1, 8)
    match = rl.best_match_cost(s, "fp16")
    assert match.bytes == 2 * 2 * 32 * (8 + 6) + 4 * 2 * 6 + 4 * 2
    assert match.tensor_flops == 2 * 2 * 32 * 8 * 6
    append = rl.append_cost(s, "bf16")
    assert append.bytes == 4 * 2 * 6 + 2 * 2 * 2 * 160 * 1 + 8 * 2
    full = _tiny(memory_frames=0, capacity=10)  # L = 10, one entry too many: 10 - 6 - 1 move
    assert full.at_capacity
    assert rl.evict_cost(full, "fp16").bytes == 4 * 2 * 2 * 160 * 3
    assert rl.evict_cost(_tiny(memory_frames=2, capacity=10), "fp16").launches == 0


def test_conv_formula_matches_flop_counter():
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=2, dilation=2, groups=2)
    x = torch.randn(3, 6, 11, 13)
    with FlopCounterMode(display=False) as counter:
        y = conv(x)
    assert rl.conv2d_flops(x.shape, conv.weight.shape, y.shape) == counter.get_total_flops() > 0


def test_traced_step_convolutions_match_the_real_model():
    """The meta trace's convolutions are the real model's, as FlopCounterMode counts them on the CPU."""
    s = rl.Scenario("r18", 2, 1, height=60, width=90)  # pads to 64x96: 4x6 grid
    torch.manual_seed(0)
    model = prepare(SwiftNet("r18").eval(), PrepareOptions(winograd=False, tune=False))
    traced = rl.trace_step(rl.build_inference_model("r18", "fp32"), s, "fp32")
    convs = [c for c in traced if c.kind == "conv"]

    padding = Padding.to_multiple(s.height, s.width, 16)
    frame = padding.pad(torch.rand(1, 3, s.height, s.width))
    mem_key, mem_val = torch.randn(2, 32, 30), torch.randn(2, 128, 30)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        query = model.encode_query(frame)
        probs = model.segment_objects(query, mem_key, mem_val, backend="reference")
        model.encode_memory(query.features, probs, backend="reference")
    counts = counter.get_flop_counts()["Global"]
    real = sum(v for op, v in counts.items() if "convolution" in str(op))
    assert real > 0 and sum(c.tensor_flops for c in convs) == real
    # Every convolution runs once per step, the LAE's four mask convolutions as their two pairs.
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in model.modules()) - 4


def test_traced_bytes_by_hand_at_480p():
    traced = rl.trace_step(rl.build_inference_model("r18", "fp16"), rl.Scenario("r18", 1, 1), "fp16")
    stem = next(c for c in traced if c.name == "Encoder.conv1")
    # input (1, 3, 480, 864), weight (64, 3, 7, 7) with the folded batch norm's bias, output (1, 64, 240, 432).
    assert stem.bytes == 2 * (3 * 480 * 864 + 64 * 3 * 49 + 64 + 64 * 240 * 432)
    assert stem.tensor_flops == 2 * 64 * 240 * 432 * 3 * 49
    relu = next(c for c in traced if c.name == "Encoder: relu_")  # in place: read and write c1
    assert relu.bytes == 2 * 2 * 64 * 240 * 432
    assert not any(c.name.endswith((": dropout", ": permute")) for c in traced)


def test_frame_prediction_adds_up():
    s = rl.Scenario("r18", 1, 5)
    plain, updating = rl.frame_ops(rl.build_inference_model("r18", "fp16"), s, "fp16")
    p, u = rl.predict(plain, rl.H100_SXM), rl.predict(updating, rl.H100_SXM)
    assert u.ops_s > p.ops_s > p.fused_s > 0
    assert p.ops_s == pytest.approx(sum(rl.roofline(c, rl.H100_SXM).time_s for c in plain))
    assert u.launches - p.launches == 3  # best_match, select_novel, append
    assert math.isclose(p.total_s(2.0), p.ops_s + p.launches * 2e-6)
    assert rl.predict(plain, rl.H200_SXM).ops_s < p.ops_s
    mean = rl.mean_frame(p, u, update_every=5)
    assert mean.ops_s == pytest.approx(0.8 * p.ops_s + 0.2 * u.ops_s)
    assert mean.launches == pytest.approx(p.launches + 0.6)
    assert sum(stage[0] for stage in mean.by_stage.values()) == pytest.approx(mean.ops_s)


def test_family_read_formulas_by_hand():
    xmem = rl.FAMILY_READS["xmem"]  # Ck 64, Cv 512, top-30, selection + shrinkage, usage, readout alone
    sweep = rl.family_sweep_cost(xmem, 1000, "fp16", pixels=10)
    # keys 64 x 1000, query keys and selection 64 x 10 each, shrinkage 1000; 2-byte elements.
    assert sweep.bytes == 2 * (64 * 1000 + 2 * 64 * 10 + 1000)
    # Keys and squared keys, each in two exact parts: four products of 2 Ck N P FLOPs.
    assert sweep.tensor_flops == 4 * 2 * 64 * 1000 * 10 and sweep.alu_ops == rl.TOPK_ALU_PER_PAIR * 1000 * 10
    assert rl.family_sweep_cost(xmem, 1000, "fp32", pixels=10).tensor_flops == 2 * 2 * 64 * 1000 * 10
    gather = rl.family_gather_cost(xmem, 1000, 2, "fp16", pixels=10)
    # min(N, P k) = 300 columns of 512 per object, the (512, 10) readout per object, usage 1000 floats per object.
    assert gather.bytes == 2 * 2 * 512 * 300 + 2 * 2 * 512 * 10 + 4 * 2 * 1000
    assert gather.alu_ops == 2 * 512 * 30 * 10 and gather.sfu_ops == 2 * 30 * 10
    scattered = rl.family_gather_cost(xmem, 1000, 2, "fp16", pixels=10, sectors=True)
    assert scattered.bytes == 2 * 512 * 30 * 10 * 32 + 2 * 2 * 512 * 10 + 4 * 2 * 1000
    stcn = rl.FAMILY_READS["stcn"]  # the query value is read and appended: the output twice, plus q_val
    assert rl.family_gather_cost(stcn, 100, 1, "fp32", pixels=10).bytes == 4 * 512 * 100 + 4 * 512 * 10 * 3
    # At XMem's 26k entries the top-k read moves less than the full softmax and computes less.
    full = rl.family_full_cost(xmem, 26000, 1, "fp16")
    topk = [rl.family_sweep_cost(xmem, 26000, "fp16"), rl.family_gather_cost(xmem, 26000, 1, "fp16")]
    assert sum(c.tensor_flops for c in topk) < full.tensor_flops
    table = rl.family_tables(objects=[1], dtypes=["fp16"])
    assert table.count("| XMem |") == 2 * 5 and "| STCN |" in table and "| Cutie |" in table
