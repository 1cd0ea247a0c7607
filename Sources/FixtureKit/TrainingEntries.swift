// TrainingEntries.swift — fixture entries for whole training iterations (training/*): the
// stage-1 step of train_stage1.py with the case's weights, inputs and injected random draws,
// producing losses and gradients for each dropout variant; the stage-2 iteration of
// train_stage2.py (Algorithm 1) for every update_step n the case pins; the stage-3 clip of
// train_stage3.py (Algorithm 2): every slide's window and x̂0, and the gradient slides' latent
// losses and temporal-module gradients (weights held fixed between slides, as the case says).
import Foundation
import Models
import NN
import Torch

/// Tolerances of the training cases: `*_maxabs` are absolute, `*_rel` relative, "exact" exact.
@Sendable func trainingTolerance(_ c: FixtureCase, _ key: String) -> ToleranceSpec? {
    let tol = c.json["tolerance"]
    func abs(_ name: String) -> ToleranceSpec? { tol?[name]?.double.map { .absolute($0) } }
    func rel(_ name: String) -> ToleranceSpec? { tol?[name]?.double.map { .relative($0) } }
    if key == "out.noise" || key == "out.noisy_latents" { return abs("noise_noisy_maxabs") }
    if key == "out.facial_mask" || key.hasPrefix("out.bank_keep_idx") { return .exact }
    if key.hasSuffix(".model_pred") { return abs("model_pred_maxabs") }
    if key.hasSuffix(".x0_pred") { return abs("x0_pred_maxabs") }
    if key.hasSuffix(".timesteps") { return .exact }
    if key.range(of: #"\.step[0-9]+\."#, options: .regularExpression) != nil { return abs("step_debug_maxabs") }
    if key.hasSuffix(".loss_latent_mse") { return rel("loss_latent_mse_rel") }
    if key.hasSuffix(".loss") || key.hasSuffix(".loss_mse") || key.hasSuffix(".loss_local") { return rel("loss_rel") }
    if key.contains(".grad.in.") { return rel("grad_in_rel") }
    if key.contains(".grad_ref.") { return rel("grad_ref_rel") }
    if key.contains(".grad.") { return rel("grad_rel") }
    return nil
}

let trainingEntries: [FixtureEntry] = [
    FixtureEntry([stage1CaseClass], tolerance: trainingTolerance) { c in try runStage1Step(c) },
    FixtureEntry([stage2CaseClass], tolerance: trainingTolerance) { c in try runDistillationStep(c) },
    FixtureEntry([stage3CaseClass], tolerance: slidingWindowTolerance) { c in try runSlidingWindow(c) },
]

let stage1CaseClass = "train_stage1.py one training iteration (stage 1, image-level hybrid motion training), latent-space part: noise + offset noise, uniform timestep, DDIMScheduler.add_noise, Net.forward (reference UNet writer + ReferenceAttentionControl.update(drop_ratio=0.3) + pose/motion dropout + UNet3DConditionModel reader), get_x0_from_eps, latent MSE + masked latent MSE, backward. PoseGuider / MotEncoder / LivePortrait / CLIP / VAE bypassed (their outputs are given)."

func runStage1Step(_ c: FixtureCase) throws -> [String: Tensor] {
    let cfg = c.config
    let denoiser = try UNet3DConditionModel(c.config("denoising_unet", as: UNet3DConditionModel.Config.self))
    try denoiser.load(from: c.weights("weights.safetensors"))
    let reference = try UNet2DConditionModel(c.config("reference_unet", as: UNet2DConditionModel.Config.self),
                                             withOutputLayers: false)
    // The reference UNet of PersonaLive has no conv_norm_out/conv_out.
    try reference.load(from: c.weights("weights_reference.safetensors"))
    let control = try ReferenceAttentionControl(writer: reference, reader: denoiser, fusionBlocks: "full",
                                                roundBankToFP16: true)
    var schedulerConfig = try (cfg["scheduler"] ?? .object([:])).decode(DDIMScheduler.Config.self)
    schedulerConfig.num_train_timesteps = 1000
    let scheduler = try DDIMScheduler(schedulerConfig)
    var step = HybridMotionStep(denoiser: denoiser, reference: reference, control: control, scheduler: scheduler)
    step.noiseOffset = cfg["noise_offset"]?.double ?? 0.05
    step.bankDropRatio = cfg["bank_drop_ratio"]?.double ?? 0.3
    step.lossWeights = (cfg["loss_weights"]?["loss_mse"]?.double ?? 1, cfg["loss_weights"]?["loss_local"]?.double ?? 1)
    denoiser.train()
    reference.train()

    var out: [String: Tensor] = [:]
    let bankKeys = try c.inputKeys.filter { $0.hasPrefix("in.bank_rand.block") }.map { key -> (Int, String) in
        guard let j = Int(key.dropFirst("in.bank_rand.block".count)) else {
            throw FixtureError("\(c.name): \(key): expected in.bank_rand.block<number>")
        }
        return (j, key)
    }.sorted { $0.0 < $1.0 }.map(\.1)
    let draws = try bankKeys.map { try c.input($0) }
    let keepFraction = 1 - step.bankDropRatio
    for (j, d) in draws.enumerated() {
        let keep = Int(Double(d.shape[1]) * keepFraction)
        out["out.bank_keep_idx.block\(j)"] = try d.argsort(dim: 1).narrow(1, start: 0, length: keep)
    }
    let gradKeys = (cfg["grad_param_keys"]?.array ?? []).compactMap(\.string)
    let refGradKeys = (cfg["grad_ref_param_keys"]?.array ?? [.string("conv_in.weight")]).compactMap(\.string)
    guard let variants = cfg["variants"]?.object, !variants.isEmpty else {
        throw FixtureError("\(c.name): case.json config has no 'variants' (the dropout variants to run)")
    }
    let denoiserParams = Dictionary(denoiser.namedParameters(), uniquingKeysWith: { a, _ in a })
    let referenceParams = Dictionary(reference.namedParameters(), uniquingKeysWith: { a, _ in a })

    try Torch.withGradEnabled(true) {
        for (name, v) in variants.sorted(by: { $0.key < $1.key }) {
            for p in denoiserParams.values { try p.setGrad(nil) }
            for p in referenceParams.values { try p.setGrad(nil) }
            let pose = try c.input("pose_fea").requiresGrad_()
            let motion = try c.input("motion").requiresGrad_()
            let inputs = HybridMotionInputs(
                referenceLatent: try c.input("ref_latent"), targetLatent: try c.input("tgt_latent"),
                clip: try c.input("clip_embeds"), poseFeatures: pose, motion: motion,
                faceMask: try c.input("face_mask"), localMask: try c.input("local_mask"))
            let flags = (v["uncond_fwd"] == .bool(true), v["pose_dropped"] == .bool(true), v["motion_dropped"] == .bool(true))
            let d = HybridMotionDraws(noise: try c.input("noise"), noiseOffset: try c.input("noise_offset_randn"),
                                      timesteps: try c.input("timesteps"), bankDraws: draws, uncond: flags.0,
                                      dropPose: flags.1, dropMotion: flags.2)
            let r = try step(inputs, draws: d)
            try r.loss.backward()
            out["out.noise"] = try r.noise.detach()
            out["out.noisy_latents"] = try r.noisyLatents.detach()
            out["out.facial_mask"] = try r.facialMask.detach()
            out["out.\(name).model_pred"] = try r.modelPred.detach()
            out["out.\(name).x0_pred"] = try r.x0.detach()
            out["out.\(name).loss_mse"] = try r.lossMSE.detach().reshape([1])
            out["out.\(name).loss_local"] = try r.lossLocal.detach().reshape([1])
            out["out.\(name).loss"] = try r.loss.detach().reshape([1])
            func gradOrZeros(_ t: Tensor) throws -> Tensor { try t.grad ?? Tensor.zeros(t.shape) }
            for k in gradKeys {
                guard let p = denoiserParams[k] else { throw FixtureError("denoiser has no parameter \(k)") }
                out["out.\(name).grad.\(k)"] = try gradOrZeros(p)
            }
            for k in refGradKeys {
                guard let p = referenceParams[k] else { throw FixtureError("reference UNet has no parameter \(k)") }
                out["out.\(name).grad_ref.\(k)"] = try gradOrZeros(p)
            }
            out["out.\(name).grad.in.pose_fea"] = try gradOrZeros(pose)
            out["out.\(name).grad.in.motion"] = try gradOrZeros(motion)
        }
    }
    return out
}

let stage2CaseClass = "train_stage2.py one training iteration (fewer-step appearance distillation, paper Algorithm 1), latent-space part: Net.forward (reference UNet writer + ReferenceAttentionControl.update(drop_ratio=0.3) + UNet3DConditionModel reader) + get_x0_from_eps + DDIMScheduler.add_noise; PoseGuider / MotEncoder / CLIP / VAE bypassed"

/// The n-th step's losses and gradients for every n with outputs in the case (`out.n{n}.*`); the
/// loss is the latent MSE of x̂0 against the target, as the case prescribes for this check.
func runDistillationStep(_ c: FixtureCase) throws -> [String: Tensor] {
    let cfg = c.config
    let denoiser = try UNet3DConditionModel(c.config("denoising_unet", as: UNet3DConditionModel.Config.self))
    try denoiser.load(from: c.weights("weights.safetensors"))
    let reference = try UNet2DConditionModel(c.config("reference_unet", as: UNet2DConditionModel.Config.self),
                                             withOutputLayers: false)
    try reference.load(from: c.weights("weights_reference.safetensors"))
    // The reader banks are stored in fp16 (ReferenceAttentionControl.update's default dtype) unless
    // the case says otherwise.
    let fp16Banks = cfg["dtype"]?.string.map { $0.contains("fp16") } ?? true
    let control = try ReferenceAttentionControl(writer: reference, reader: denoiser,
                                                fusionBlocks: cfg["reader"]?["fusion_blocks"]?.string ?? "full",
                                                roundBankToFP16: fp16Banks)
    var schedulerConfig = try (cfg["scheduler"] ?? .object([:])).decode(DDIMScheduler.Config.self)
    schedulerConfig.num_train_timesteps = 1000
    var step = DistillationStep(denoiser: denoiser, reference: reference, control: control,
                                scheduler: try DDIMScheduler(schedulerConfig))
    if let tl = cfg["timesteps_list"]?.array { step.timesteps = tl.compactMap { $0.double.map { Int($0) } } }
    step.bankDropRatio = cfg["drop_ratio"]?.double ?? 0.3
    denoiser.train()
    reference.train()

    let pass0 = try c.numberedInputs("in.bank_rand.pass0.block")
    let pass1 = try c.numberedInputs("in.bank_rand.pass1.block")
    let renoise = try c.numberedInputs("in.noise_renoise_")
    var out: [String: Tensor] = [:]
    let keepFraction = 1 - step.bankDropRatio
    for (p, draws) in [pass0, pass1].enumerated() {
        for (j, d) in draws.enumerated() {
            let keep = Int(Double(d.shape[1]) * keepFraction)
            out["out.bank_keep_idx.pass\(p).block\(j)"] = try d.argsort(dim: 1).narrow(1, start: 0, length: keep)
        }
    }
    let ns = Set(c.outputKeys.compactMap { k -> Int? in
        guard k.hasPrefix("out.n"), let dot = k.dropFirst(5).firstIndex(of: ".") else { return nil }
        return Int(k[k.index(k.startIndex, offsetBy: 5)..<dot])
    }).sorted()
    let gradKeys = (cfg["grad_param_keys"]?.array ?? []).compactMap(\.string)
    let refGradKeys = (cfg["grad_ref_param_keys"]?.array ?? [.string("conv_in.weight")]).compactMap(\.string)
    let denoiserParams = Dictionary(denoiser.namedParameters(), uniquingKeysWith: { a, _ in a })
    let referenceParams = Dictionary(reference.namedParameters(), uniquingKeysWith: { a, _ in a })
    let target = try c.input("tgt_latent")

    try Torch.withGradEnabled(true) {
        for n in ns {
            for p in denoiserParams.values { try p.setGrad(nil) }
            for p in referenceParams.values { try p.setGrad(nil) }
            let pose = try c.input("pose_fea").requiresGrad_()
            let motion = try c.input("motion").requiresGrad_()
            let inputs = DistillationInputs(referenceLatent: try c.input("ref_latent"), clip: try c.input("clip_embeds"),
                                            poseFeatures: pose, motion: motion)
            guard renoise.count >= n - 1 else {
                throw FixtureError("\(c.name): n = \(n) needs \(n - 1) in.noise_renoise_* tensors, the case has \(renoise.count)")
            }
            let draws = DistillationDraws(steps: n, noiseInit: try c.input("noise_init"), renoise: renoise,
                                          bankDrawsPass0: pass0, bankDrawsPass1: n > 1 ? pass1 : nil)
            let r = try step(inputs, draws: draws)
            let loss = try F.mseLoss(r.x0, target)
            try loss.backward()
            out["out.n\(n).x0_pred"] = try r.x0.detach()
            out["out.n\(n).loss_latent_mse"] = try loss.detach().reshape([1])
            out["out.n\(n).timesteps"] = try Tensor(r.timesteps.map { Int64($0) })
            for s in 0..<n {
                out["out.n\(n).step\(s).x_in"] = try r.stepInputs[s].detach()
                out["out.n\(n).step\(s).eps"] = try r.stepEps[s].detach()
                out["out.n\(n).step\(s).x0"] = try r.stepX0[s].detach()
            }
            func gradOrZeros(_ t: Tensor) throws -> Tensor { try t.grad ?? Tensor.zeros(t.shape) }
            for k in gradKeys {
                guard let p = denoiserParams[k] else { throw FixtureError("denoiser has no parameter \(k)") }
                out["out.n\(n).grad.\(k)"] = try gradOrZeros(p)
            }
            for k in refGradKeys {
                guard let p = referenceParams[k] else { throw FixtureError("reference UNet has no parameter \(k)") }
                out["out.n\(n).grad_ref.\(k)"] = try gradOrZeros(p)
            }
            out["out.n\(n).grad.in.pose_fea"] = try gradOrZeros(pose)
            out["out.n\(n).grad.in.motion"] = try gradOrZeros(motion)
        }
    }
    return out
}

let stage3CaseClass = "train_stage3.py one training iteration (sliding-window training, paper Algorithm 2), latent-space part: Net (UNet3DConditionModel reader) + get_x0_from_eps + DDIMScheduler.add_noise over sliding 16-frame windows; reference UNet (frozen, once, no_grad) + ReferenceAttentionControl.update(drop_ratio=0.3)"

/// Windows, x̂0 and the final buffer against `x0_maxabs`; losses and gradients relative; the
/// schedule (gradient slides, window timesteps) exactly.
@Sendable func slidingWindowTolerance(_ c: FixtureCase, _ key: String) -> ToleranceSpec? {
    let tol = c.json["tolerance"]
    if key == "out.grad_slides" || key == "out.window_timesteps" || key.hasPrefix("out.bank_keep_idx") { return .exact }
    if key.hasSuffix(".x_in") || key.hasSuffix(".x0") || key.hasSuffix(".emitted_x0") || key == "out.noisy_latents_all_final" {
        return tol?["x0_maxabs"]?.double.map { .absolute($0) }
    }
    if key.hasSuffix(".loss_latent_mse") {
        return (tol?["loss_latent_mse_rel"]?.double ?? tol?["loss_rel"]?.double).map { .relative($0) }
    }
    if key.contains(".grad.") { return tol?["grad_rel"]?.double.map { .relative($0) } }
    return nil
}

/// One clip of the case's `frames` frames through SlidingWindowStep with the case's draws; at each
/// gradient slide the latent MSE of x̂0 against the window's target is backpropagated and the
/// gradients of `grad_param_keys` recorded, then cleared (no optimizer step: the case keeps the
/// weights fixed). Checks that no parameter outside `temporal_modules` received a gradient.
func runSlidingWindow(_ c: FixtureCase) throws -> [String: Tensor] {
    let cfg = c.config
    let denoiser = try UNet3DConditionModel(c.config("denoising_unet", as: UNet3DConditionModel.Config.self))
    try denoiser.load(from: c.weights("weights.safetensors"))
    let reference = try UNet2DConditionModel(c.config("reference_unet", as: UNet2DConditionModel.Config.self),
                                             withOutputLayers: false)
    try reference.load(from: c.weights("weights_reference.safetensors"))
    let control = try ReferenceAttentionControl(writer: reference, reader: denoiser, fusionBlocks: "full", roundBankToFP16: true)
    var schedulerConfig = try c.config("scheduler", as: DDIMScheduler.Config.self)
    schedulerConfig.num_train_timesteps = 1000
    var step = SlidingWindowStep(denoiser: denoiser, reference: reference, control: control,
                                 scheduler: try DDIMScheduler(schedulerConfig))
    if let tl = cfg["timesteps_list"]?.array { step.timesteps = tl.compactMap { $0.double.map { Int($0) } } }
    if let m = cfg["temporal_window_size"]?.double { step.chunkFrames = Int(m) }
    step.bankDropRatio = cfg["drop_ratio"]?.double ?? 0.3
    // Stage 3 trains only the temporal modules; everything else is frozen, as the script does.
    for (name, p) in denoiser.namedParameters() { _ = try p.requiresGrad_(name.contains("temporal_modules")) }
    for (_, p) in reference.namedParameters() { _ = try p.requiresGrad_(false) }
    denoiser.train()
    reference.eval()

    let bankDraws = try c.numberedInputs("in.bank_rand.block")
    let renoise = try c.numberedInputs("in.noise_renoise_")
    let target = try c.input("tgt_latents")
    let frames = target.shape[2]
    if let f = cfg["frames"]?.double, Int(f) != frames {
        throw FixtureError("\(c.name): config.frames is \(Int(f)) but in.tgt_latents has \(frames) frames")
    }
    if let ns = cfg["num_slides"]?.double, Int(ns) != step.slideCount(frames: frames) {
        throw FixtureError("\(c.name): config.num_slides is \(Int(ns)), the window layout gives \(step.slideCount(frames: frames))")
    }
    let motion = try c.input("motion")
    guard motion.dim == 3, motion.shape[0] == frames else {
        throw FixtureError("\(c.name): in.motion must be (F = \(frames), tokens, dim), got \(motion.shape)")
    }
    let inputs = SlidingWindowInputs(referenceLatent: try c.input("ref_latent"), clip: try c.input("clip_embeds"),
                                     poseFeatures: try c.input("pose_fea"), motion: try motion.unsqueeze(0),
                                     targetLatents: target)
    let gradKeys = (cfg["grad_param_keys"]?.array ?? []).compactMap(\.string)
    let params = denoiser.namedParameters()
    let byName = Dictionary(params, uniquingKeysWith: { a, _ in a })
    let gradParams = try gradKeys.map { k in
        guard let p = byName[k] else { throw FixtureError("\(c.name): the denoiser has no parameter \(k)") }
        return (k, p)
    }
    var out: [String: Tensor] = [:]
    let keep = 1 - step.bankDropRatio
    for (j, d) in bankDraws.enumerated() {
        out["out.bank_keep_idx.block\(j)"] = try d.argsort(dim: 1).narrow(1, start: 0, length: Int(Double(d.shape[1]) * keep))
    }
    var gradSlides: [Int64] = []
    let result = try Torch.withGradEnabled(true) {
        try step(inputs, draws: SlidingWindowDraws(noiseInit: try c.input("noise_init"), bankDraws: bankDraws, renoise: renoise)) { g in
            let loss = try F.mseLoss(g.x0, g.target)
            try loss.backward()
            out["out.slide\(g.index).loss_latent_mse"] = try loss.detach().reshape([1])
            for (k, p) in gradParams { out["out.slide\(g.index).grad.\(k)"] = try p.grad ?? Tensor.zeros(p.shape) }
            if let leak = params.first(where: { !$0.0.contains("temporal_modules") && $0.1.grad != nil }) {
                throw FixtureError("\(c.name): slide \(g.index): \(leak.0) received a gradient outside the temporal modules")
            }
            for (_, p) in params { try p.setGrad(nil) }
            gradSlides.append(Int64(g.index))
        }
    }
    for r in result.slides {
        out["out.slide\(r.index).x_in"] = r.input
        out["out.slide\(r.index).x0"] = r.x0
        out["out.slide\(r.index).emitted_x0"] = try r.emitted
    }
    out["out.grad_slides"] = try Tensor(gradSlides, shape: [gradSlides.count])
    out["out.window_timesteps"] = result.windowTimesteps
    out["out.noisy_latents_all_final"] = result.finalBuffer
    return out
}
