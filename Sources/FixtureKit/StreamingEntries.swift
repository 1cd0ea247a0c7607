// StreamingEntries.swift — fixture entries for whole streaming loops (streaming/*): wrapper.py's
// fuse_reference + process_input with the front-ends replaced by given tensors, run through the
// Inference layer's StreamingEngine with the case's denoiser, reference UNet, loop constants and noise.
import Inference
import Models
import NN
import Torch

let streamingEntries: [FixtureEntry] = [
    FixtureEntry([streamingCaseClass], tolerance: streamingTolerance) { c in try runStreamLoop(c) },
]

let streamingCaseClass = "src.wrapper.PersonaLive.fuse_reference + process_input (streaming loop), front-ends bypassed; denoising UNet3DConditionModel + reference UNet2DConditionModel + ReferenceAttentionControl(write/read, fusion_blocks='full', cache_kv=True) + DDIMScheduler"

/// The case's absolute tolerance for latents; ε predictions are 10× tighter (their values are small;
/// tolerance_note: 1e-4); integer outputs (call indices, bank sizes) exact.
@Sendable func streamingTolerance(_ c: FixtureCase, _ key: String) -> ToleranceSpec? {
    if key == "out.keyframe_chunks" || key == "out.hkm_check_calls" || key == "out.hkm_bank_size_before"
        || key == "out.window_timesteps" {
        return .exact
    }
    let base = c.tolerance(for: key)
    if key.hasPrefix("out.noise_pred_") { return .absolute(min(base, c.json["noise_pred_tolerance"]?.double ?? 1e-4)) }
    return .absolute(base)
}

func runStreamLoop(_ c: FixtureCase) throws -> [String: Tensor] {
    let cfg = c.config
    guard let loop = cfg["loop"] else { throw FixtureError("\(c.name): config.loop is missing") }
    let (denoiser, reference) = try caseUNets(c)
    let fusion = cfg["reader"]?["fusion_blocks"]?.string ?? "full"
    let control = try ReferenceAttentionControl(writer: reference, reader: denoiser, fusionBlocks: fusion,
                                                roundBankToFP16: true)
    defer { control.detach() }

    var stream = StreamConfig()
    func int(_ key: String) throws -> Int {
        guard let v = loop[key]?.int else { throw FixtureError("\(c.name): config.loop.\(key) is missing or not an integer") }
        return v
    }
    stream.temporal_window_size = try int("temporal_window_size")
    stream.timesteps = try (loop["timesteps"]?.array ?? []).map {
        guard let v = $0.int else { throw FixtureError("\(c.name): config.loop.timesteps must be integers") }
        return v
    }
    stream.warmup_frames = try int("warmup_frames")
    stream.hkm_warmup_chunks = try int("hkm_warmup_chunks")
    stream.hkm_max_keyframes = try int("hkm_max_keyframes")
    guard let tau = loop["hkm_tau"]?.double else { throw FixtureError("\(c.name): config.loop.hkm_tau is missing") }
    stream.hkm_tau = tau
    let schedulerConfig = try (cfg["scheduler"] ?? .object([:])).decode(DDIMScheduler.Config.self)

    let engine = try StreamingEngine(config: stream, denoiser: denoiser, reference: reference, control: control,
                                     scheduler: schedulerConfig)
    engine.recordDebug = true
    let pose = try c.input("pose_cond_fea"), motion = try c.input("motion_hidden_states")
    try engine.start(referenceLatent: c.input("ref_latent"), clip: c.input("clip_embeds"),
                     referenceMotion: c.input("ref_motion"), warmupPose: c.input("warmup_pose"),
                     warmupMotion: c.input("warmup_motion"), initNoise: c.input("init_noise"))
    var out: [String: Tensor] = ["out.init_queue": try engine.queue!.clone(),
                                 "out.window_timesteps": try Tensor(stream.windowTimesteps, shape: [stream.windowFrames])]
    let m = stream.temporal_window_size
    let frames = pose.shape[2]
    guard frames % m == 0, motion.shape[1] == frames else {
        throw FixtureError("\(c.name): \(frames) pose frames and \(motion.shape[1]) motion frames: expected equal multiples of \(m)")
    }
    var checks: [(Int64, Float, Int64)] = []
    var keyframeLatents: [Tensor] = []
    for k in 0..<(frames / m) {
        let r = try engine.step(pose: pose.narrow(2, start: k * m, length: m), motion: motion.narrow(1, start: k * m, length: m),
                                noise: c.input("noise_chunk_\(k)"))
        out["out.latents_chunk_\(k)"] = r.latents
        out["out.window_in_\(k)"] = r.windowIn
        out["out.noise_pred_\(k)"] = r.noisePred
        if let check = r.check { checks.append((Int64(k), Float(check.distance), Int64(check.bankSize))) }
        if r.addedKeyframe { keyframeLatents.append(try r.latents.select(2, 0)) }
    }
    out["out.final_queue"] = engine.queue
    out["out.keyframe_chunks"] = try Tensor(engine.keyframeCalls.map(Int64.init), shape: [engine.keyframeCalls.count])
    if !keyframeLatents.isEmpty { out["out.keyframe_latents"] = try Tensor.cat(keyframeLatents, dim: 0) }
    out["out.hkm_check_calls"] = try Tensor(checks.map(\.0), shape: [checks.count])
    out["out.hkm_min_dist"] = try Tensor(checks.map(\.1), shape: [checks.count])
    out["out.hkm_bank_size_before"] = try Tensor(checks.map(\.2), shape: [checks.count])
    if let bank = engine.motionBank {
        let refMotion = try c.input("ref_motion")
        out["out.motion_bank_final"] = try bank.reshape([1, bank.shape[0]] + refMotion.shape.dropFirst())
    }
    return out
}
