#!/usr/bin/env python
# check_peer_fixtures.py — checks the PyTorch-eager peer (personalive_peer.py) against the
# reference-generated PersonaLive fixtures (set A):
#   personalive/{unet3d_tiny, unet3d_tiny_with_reference, motion_module, temporal_module, pose_guider}
#     (src/models/unet_3d.py UNet3DConditionModel, unet_2d_condition.py + mutual_self_attention.py
#      ReferenceAttentionControl, motion_module.py VanillaTemporalModule, pose_guider.py PoseGuider),
#   training/stage1_step_tiny (train_stage1.py one iteration, latent space, with gradients),
#   streaming/stream_loop_tiny (src/wrapper.py fuse_reference + process_input).
# Usage: python check_peer_fixtures.py [FIXTURES_ROOT]
#   (default: $PERSONALIVE_FIXTURES, else ../shared/fixtures beside the package). Add -v for per-tensor errors.
# Prints one line per case; exits 1 if any case fails or a fixture is missing.
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import personalive_peer as P  # noqa: E402

VERBOSE = False


class Missing(Exception):
    pass


def case_files(root, name):
    d = os.path.join(root, name)
    for f in ("case.json", "io.safetensors"):
        if not os.path.isfile(os.path.join(d, f)):
            raise Missing(f"{name}: missing {f}")
    with open(os.path.join(d, "case.json")) as fh:
        case = json.load(fh)
    return d, case, load_file(os.path.join(d, "io.safetensors"))


def weights(d, fname="weights.safetensors"):
    p = os.path.join(d, fname)
    if not os.path.isfile(p):
        raise Missing(f"{d}: missing {fname}")
    return load_file(p)


def loaded(module, sd):
    module.load_state_dict(sd, strict=True)
    return module.eval()


class Checker:
    """Collects (key, err, tol, kind) for one case; kind 'abs' (max abs err), 'rel' (max|diff|/max|ref|),
    'exact'."""

    def __init__(self, io):
        self.io = io
        self.items = []

    def cmp(self, key, got, tol, kind="abs"):
        if key not in self.io:
            raise Missing(f"io has no {key}")
        ref = self.io[key]
        if got is None:
            got = torch.zeros_like(ref)
        got = got.detach().to(torch.float64).reshape(ref.shape) if got.shape != ref.shape and \
            got.numel() == ref.numel() else got.detach().to(torch.float64)
        if tuple(got.shape) != tuple(ref.shape):
            self.items.append((key, float("inf"), tol, kind))
            return
        diff = (got - ref.to(torch.float64)).abs().max().item() if ref.numel() else 0.0
        if kind == "rel":
            scale = ref.abs().max().item()
            err = diff / scale if scale > 0 else diff
        else:
            err = diff
        self.items.append((key, err, 0.0 if kind == "exact" else tol, kind))

    def result(self):
        done = {k for k, *_ in self.items}
        for key in sorted(k for k in self.io if k.startswith("out.") and k not in done):
            self.items.append((key + " (not compared)", float("inf"), 0.0, "exact"))
        ok = all(err <= tol for _, err, tol, _ in self.items)
        return ok, self.items


def run_unet3d_tiny(root):
    d, case, io = case_files(root, "personalive/unet3d_tiny")
    m = loaded(P.UNet3DConditionModel(case["config"]), weights(d))
    tol = case["tolerance"]
    c = Checker(io)
    ehs = [io["in.clip_embeds"], io["in.motion_hidden_states"]]
    with torch.no_grad():
        c.cmp("out.sample", m(io["in.sample"], io["in.timestep"], ehs, pose_cond_fea=io["in.pose_cond_fea"])[0], tol)
        c.cmp("out.sample_no_pose", m(io["in.sample"], io["in.timestep"], ehs, pose_cond_fea=None)[0], tol)
    return c


def run_unet3d_with_reference(root):
    d, case, io = case_files(root, "personalive/unet3d_tiny_with_reference")
    cfg = case["config"]
    den = loaded(P.UNet3DConditionModel(cfg["denoising_unet"]), weights(d))
    ref = loaded(P.build_reference_unet(cfg["reference_unet"]), weights(d, "weights_reference.safetensors"))
    ctl = P.ReferenceAttentionControl(ref, den, fusion_blocks=cfg["reader"]["fusion_blocks"])
    expected_pairs = [tuple(p) for p in case.get("pairing_reader_writer", [])]
    if expected_pairs and ctl.pairs != expected_pairs:
        raise AssertionError(f"pairing {ctl.pairs} != {expected_pairs}")
    tol = case["tolerance"]
    c = Checker(io)
    clip = io["in.clip_embeds"]
    args = (io["in.sample"], io["in.timestep"], [clip, io["in.motion_hidden_states"]])
    with torch.no_grad():
        ctl.clear()
        c.cmp("out.reference_unet_sample", ctl.write(io["in.ref_latent"], clip), tol)
        for j, bank in enumerate(ctl.writer_banks):
            c.cmp(f"out.bank.{j}", bank[0], tol)
        ctl.update()
        c.cmp("out.sample", den(*args, pose_cond_fea=io["in.pose_cond_fea"])[0], tol)
        ctl.clear_writer()
        ctl.write(io["in.keyframe_latent"], clip)
        ctl.update_hkf()
        c.cmp("out.sample_with_keyframe", den(*args, pose_cond_fea=io["in.pose_cond_fea"])[0], tol)
    ctl.detach()
    return c


def run_module(root, name, motion):
    d, case, io = case_files(root, name)
    m = loaded(P.VanillaTemporalModule(**case["config"]), weights(d))
    c = Checker(io)
    with torch.no_grad():
        out = m(io["in.hidden_states"], None,
                encoder_hidden_states=io["in.motion_hidden_states"] if motion else None)
    c.cmp("out.hidden_states", out, case["tolerance"])
    return c


def run_pose_guider(root):
    d, case, io = case_files(root, "personalive/pose_guider")
    m = loaded(P.PoseGuider(**case["config"]), weights(d))
    c = Checker(io)
    with torch.no_grad():
        c.cmp("out.embedding", m(io["in.conditioning"]), case["tolerance"])
    return c


def run_stage1(root):
    d, case, io = case_files(root, "training/stage1_step_tiny")
    cfg = case["config"]
    tol = case["tolerance"]
    den = loaded(P.UNet3DConditionModel(cfg["denoising_unet"]), weights(d)).train()
    ref = loaded(P.build_reference_unet(cfg["reference_unet"]), weights(d, "weights_reference.safetensors")).train()
    ctl = P.ReferenceAttentionControl(ref, den, fusion_blocks=cfg["reader"]["fusion_blocks"])
    want = [(b["reader_block"], b["writer_block"]) for b in cfg["bank_blocks"]]
    if ctl.pairs != want:
        raise AssertionError(f"pairing {ctl.pairs} != {want}")
    sched = P.DDIMHelper(**cfg["scheduler"])
    dparams = dict(den.named_parameters())
    rparams = dict(ref.named_parameters())
    c = Checker(io)
    for vi, (vname, v) in enumerate(cfg["variants"].items()):
        den.zero_grad(set_to_none=True)
        ref.zero_grad(set_to_none=True)
        pose = io["in.pose_fea"].clone().requires_grad_(True)
        motion = io["in.motion"].clone().requires_grad_(True)
        inputs = dict(ref_latent=io["in.ref_latent"], tgt_latent=io["in.tgt_latent"],
                      clip_embeds=io["in.clip_embeds"], pose_fea=pose, motion=motion,
                      face_mask=io["in.face_mask"], local_mask=io["in.local_mask"])
        draws = dict(noise=io["in.noise"], noise_offset_randn=io["in.noise_offset_randn"],
                     timesteps=io["in.timesteps"],
                     bank_rand=[io[f"in.bank_rand.block{j}"] for j in range(len(cfg["bank_blocks"]))],
                     uncond=v["uncond_fwd"], drop_pose=v["pose_dropped"], drop_motion=v["motion_dropped"])
        out = P.stage1_step(den, ref, ctl, sched.alphas_cumprod, inputs, draws, noise_offset=cfg["noise_offset"],
                            bank_drop_ratio=cfg["bank_drop_ratio"],
                            loss_weights=(cfg["loss_weights"]["loss_mse"], cfg["loss_weights"]["loss_local"]))
        if vi == 0:
            c.cmp("out.noise", out["noise"], tol["noise_noisy_maxabs"])
            c.cmp("out.noisy_latents", out["noisy"], tol["noise_noisy_maxabs"])
            c.cmp("out.facial_mask", out["facial_mask"], 0, "exact")
            for j, ids in enumerate(ctl.last_keep_idx):
                c.cmp(f"out.bank_keep_idx.block{j}", ids, 0, "exact")
        out["loss"].backward()
        p = f"out.{vname}."
        c.cmp(p + "model_pred", out["model_pred"], tol["model_pred_maxabs"])
        c.cmp(p + "x0_pred", out["x0"], tol["x0_pred_maxabs"])
        for k in ("loss_mse", "loss_local", "loss"):
            c.cmp(p + k, out[k].reshape(1), tol["loss_rel"], "rel")
        for k in cfg["grad_param_keys"]:
            c.cmp(p + "grad." + k, dparams[k].grad, tol["grad_rel"], "rel")
        for k in cfg["grad_ref_param_keys"]:
            c.cmp(p + "grad_ref." + k, rparams[k].grad, tol["grad_ref_rel"], "rel")
        c.cmp(p + "grad.in.pose_fea", pose.grad, tol["grad_in_rel"], "rel")
        c.cmp(p + "grad.in.motion", motion.grad, tol["grad_in_rel"], "rel")
    ctl.detach()
    return c


def run_stream(root):
    d, case, io = case_files(root, "streaming/stream_loop_tiny")
    cfg = case["config"]
    loop = cfg["loop"]
    den = loaded(P.UNet3DConditionModel(cfg["denoising_unet"]), weights(d))
    ref = loaded(P.build_reference_unet(cfg["reference_unet"]), weights(d, "weights_reference.safetensors"))
    ctl = P.ReferenceAttentionControl(ref, den, fusion_blocks=cfg["reader"]["fusion_blocks"])
    sched = P.DDIMHelper(**cfg["scheduler"])
    inputs = {k: io["in." + k] for k in ("ref_latent", "clip_embeds", "ref_motion", "pose_cond_fea",
                                         "motion_hidden_states", "warmup_pose", "warmup_motion", "init_noise")}
    noise = [io[f"in.noise_chunk_{k}"] for k in range(loop["num_calls"])]
    out = P.stream_loop(den, ref, ctl, sched.alphas_cumprod, inputs, noise, hkm_tau=loop["hkm_tau"],
                        hkm_warmup_chunks=loop["hkm_warmup_chunks"], max_keyframes=loop["hkm_max_keyframes"],
                        window_size=loop["temporal_window_size"], step_length=loop["step_length"])
    ctl.detach()
    tol = case["tolerance"]
    c = Checker(io)
    c.cmp("out.init_queue", out["init_queue"], tol)
    c.cmp("out.window_timesteps", out["window_timesteps"], 0, "exact")
    for k in range(loop["num_calls"]):
        c.cmp(f"out.window_in_{k}", out["window_in"][k], tol)
        c.cmp(f"out.noise_pred_{k}", out["noise_pred"][k], 1e-4)
        c.cmp(f"out.latents_chunk_{k}", out["latents_chunk"][k], tol)
    c.cmp("out.final_queue", out["final_queue"], tol)
    c.cmp("out.keyframe_chunks", torch.tensor(out["keyframe_chunks"], dtype=torch.int64), 0, "exact")
    c.cmp("out.keyframe_latents", torch.cat(out["keyframe_latents"], 0), tol)
    c.cmp("out.hkm_check_calls", torch.tensor(out["hkm_check_calls"], dtype=torch.int64), 0, "exact")
    c.cmp("out.hkm_bank_size_before", torch.tensor(out["hkm_bank_size_before"], dtype=torch.int64), 0, "exact")
    c.cmp("out.hkm_min_dist", torch.tensor(out["hkm_min_dist"]), 1e-3)
    c.cmp("out.motion_bank_final", out["motion_bank_final"], 1e-5)
    return c


CASES = [
    ("personalive/unet3d_tiny", run_unet3d_tiny),
    ("personalive/unet3d_tiny_with_reference", run_unet3d_with_reference),
    ("personalive/motion_module", lambda r: run_module(r, "personalive/motion_module", True)),
    ("personalive/temporal_module", lambda r: run_module(r, "personalive/temporal_module", False)),
    ("personalive/pose_guider", run_pose_guider),
    ("training/stage1_step_tiny", run_stage1),
    ("streaming/stream_loop_tiny", run_stream),
]


def main(argv):
    global VERBOSE
    args = [a for a in argv if a != "-v"]
    VERBOSE = len(args) != len(argv)
    package = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
    root = args[0] if args else (os.environ.get("PERSONALIVE_FIXTURES")
                                 or os.path.normpath(os.path.join(package, "..", "shared", "fixtures")))
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("PEER_THREADS", "1")))
    failed = 0
    for name, fn in CASES:
        try:
            ok, items = fn(root).result()
        except Missing as e:
            print(f"{name}: MISSING ({e}) FAIL")
            failed += 1
            continue
        except Exception as e:  # noqa: BLE001
            print(f"{name}: ERROR {type(e).__name__}: {e} FAIL")
            if VERBOSE:
                traceback.print_exc()
            failed += 1
            continue
        abs_items = [i for i in items if i[3] != "rel"]
        rel_items = [i for i in items if i[3] == "rel"]
        line = f"{name}: "
        if abs_items:
            k, err, tol, _ = max(abs_items, key=lambda i: (i[1] / i[2]) if i[2] > 0 else (float("inf") if i[1] else 0))
            line += f"max abs err {err:.3g} (tolerance {tol:g})"
        if rel_items:
            k, err, tol, _ = max(rel_items, key=lambda i: i[1] / i[2])
            line += f"; max rel err {err:.3g} (tolerance {tol:g}, {k})"
        line += " ok" if ok else " FAIL"
        print(line, flush=True)
        if VERBOSE or not ok:
            for k, err, tol, kind in items:
                flag = "" if err <= tol else "  <-- FAIL"
                print(f"    {k}: {kind} err {err:.3g} (tolerance {tol:g}){flag}")
        failed += 0 if ok else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
