// StreamingEngine.swift — the latent loop of PersonaLive's streaming inference, src/wrapper.py
// `PersonaLive.fuse_reference` + `process_input` (REFERENCE.md §A1, DESIGN §1 "Streaming
// inference"): a 16-frame window of 4 chunks at per-frame timesteps [0×4, 333×4, 666×4, 999×4]
// (oldest least noisy); per call a new chunk enters at t = 999, one denoiser pass and one DDIM step
// move every chunk one level down, and the oldest chunk leaves as its x̂0. Historical keyframes: from
// call `hkm_warmup_chunks + 1` on, when the motion tokens of the window's first frame are farther
// than τ from every entry of the motion bank, they join the bank, and (up to 3 times) the reference
// UNet's features of that frame's x̂0 are appended to the denoiser's self-attention keys/values.
//
// Front-ends are not here (FrontEnds.swift): the engine takes pose features, motion tokens and
// noise per chunk, so the fixture `streaming/stream_loop_tiny` can drive it with given tensors.
// It holds only the window, the pose/motion windows, the banks and ≤ 3 keyframes: memory does
// not grow with the stream.
import Foundation
import Logging
import Models
import NN
import Torch

/// Every constant of the loop, with the reference's values (wrapper.py, personalive_online.yaml).
public struct StreamConfig: Codable, Sendable, Equatable {
    /// Frames per chunk (temporal_window_size / temporal_adaptive_step).
    public var temporal_window_size = 4
    /// Denoising timesteps, noisiest first; the window holds one chunk per step.
    public var timesteps: [Int] = [999, 666, 333, 0]
    /// Frames of the motion-interpolated warm-up (interpolate_kps_online's num_interp 13 − 1).
    public var warmup_frames = 12
    /// How a new chunk starts: "reference" (the reference latent noised to the first timestep, as
    /// wrapper.py does) or "noise" (pure noise, as the paper writes it).
    public var new_chunk = "reference"
    /// Historical keyframes: the motion-bank distance threshold τ.
    public var hkm_tau = 17.0
    /// The check runs on calls after this many (wrapper.py: self.count > 8).
    public var hkm_warmup_chunks = 8
    /// Most keyframes whose features join the attention (wrapper.py: num_khf < 3).
    public var hkm_max_keyframes = 3
    /// Retargeting: t = t_ref + t_scale·(t_drv − t_drv,first).
    public var t_scale = 0.5

    static let newChunkModes = ["reference", "noise"]

    public init() {}

    enum K: String, CodingKey, CaseIterable {
        case temporal_window_size, timesteps, warmup_frames, new_chunk, hkm_tau, hkm_warmup_chunks, hkm_max_keyframes, t_scale
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        let d = StreamConfig()
        temporal_window_size = try c.value(.temporal_window_size, default: d.temporal_window_size)
        timesteps = try c.value(.timesteps, default: d.timesteps)
        warmup_frames = try c.value(.warmup_frames, default: d.warmup_frames)
        new_chunk = try c.value(.new_chunk, default: d.new_chunk)
        hkm_tau = try c.value(.hkm_tau, default: d.hkm_tau)
        hkm_warmup_chunks = try c.value(.hkm_warmup_chunks, default: d.hkm_warmup_chunks)
        hkm_max_keyframes = try c.value(.hkm_max_keyframes, default: d.hkm_max_keyframes)
        t_scale = try c.value(.t_scale, default: d.t_scale)
        try validate()
    }

    public func validate() throws {
        guard temporal_window_size > 0 else { throw InferenceError("stream.temporal_window_size must be positive, got \(temporal_window_size)") }
        guard timesteps.count >= 2, zip(timesteps, timesteps.dropFirst()).allSatisfy({ $0 > $1 }), timesteps.last! >= 0 else {
            throw InferenceError("stream.timesteps must be at least two decreasing values ending at >= 0, got \(timesteps)")
        }
        let steps = zip(timesteps, timesteps.dropFirst()).map { $0 - $1 }
        guard Set(steps).count == 1 else {
            throw InferenceError("stream.timesteps must be evenly spaced (one DDIM step length), got \(timesteps)")
        }
        guard warmup_frames == (timesteps.count - 1) * temporal_window_size else {
            throw InferenceError("stream.warmup_frames must fill the window's \(timesteps.count - 1) older chunks "
                                 + "(\((timesteps.count - 1) * temporal_window_size) frames), got \(warmup_frames)")
        }
        guard Self.newChunkModes.contains(new_chunk) else {
            throw InferenceError("stream.new_chunk must be one of \(Self.newChunkModes.joined(separator: ", ")), got '\(new_chunk)'")
        }
        guard hkm_max_keyframes >= 0, hkm_warmup_chunks >= 0 else {
            throw InferenceError("stream.hkm_max_keyframes and stream.hkm_warmup_chunks must not be negative")
        }
    }

    /// Chunks in the window (one per timestep).
    public var chunks: Int { timesteps.count }
    public var windowFrames: Int { chunks * temporal_window_size }
    public var stepLength: Int { timesteps[0] - timesteps[1] }
    /// Per-frame timesteps of the window, oldest chunk first: reversed(timesteps).repeat_interleave(M).
    public var windowTimesteps: [Int64] {
        timesteps.reversed().flatMap { Array(repeating: Int64($0), count: temporal_window_size) }
    }
}

/// What one call produced.
public struct StreamStep {
    /// x̂0 latents of the emitted chunk, (1, c, M, h, w).
    public let latents: Tensor
    /// Call index (0-based).
    public let call: Int
    /// Whether this call added a keyframe (its features are used from the next call on).
    public let addedKeyframe: Bool
    /// The motion-bank check of this call: (min distance, bank size before), nil when it did not run.
    public let check: (distance: Double, bankSize: Int)?
    /// The window the denoiser saw and its ε prediction (kept only with `recordDebug`).
    public let windowIn: Tensor?
    public let noisePred: Tensor?
}

public final class StreamingEngine {
    public let config: StreamConfig
    public let denoiser: UNet3DConditionModel
    public let reference: UNet2DConditionModel
    public let control: ReferenceAttentionControl
    public let scheduler: DDIMScheduler
    /// Keep each call's window and ε prediction in its StreamStep (fixture checks).
    public var recordDebug = false
    let logger: Logger

    private var referenceLatent: Tensor?
    private var clip: Tensor?
    /// The 12 latent frames at t = 0/333/666 waiting for the next call.
    public private(set) var queue: Tensor?
    /// Pose features and motion tokens of the frames in the next window, oldest first.
    private var poseWindow: [Tensor] = []
    private var motionWindow: [Tensor] = []
    /// Motion tokens, (n, tokens·dim) rows, that keyframe checks compare against.
    public private(set) var motionBank: Tensor?
    public private(set) var calls = 0
    public private(set) var keyframeCalls: [Int] = []
    private let windowTimesteps: Tensor

    public init(config: StreamConfig, denoiser: UNet3DConditionModel, reference: UNet2DConditionModel,
                control: ReferenceAttentionControl, scheduler schedulerConfig: DDIMScheduler.Config,
                logger: Logger = Logger(label: "personalive.stream")) throws {
        try config.validate()
        self.config = config
        self.denoiser = denoiser
        self.reference = reference
        self.control = control
        self.logger = logger
        control.maxKeyframes = config.hkm_max_keyframes
        let scheduler = try DDIMScheduler(schedulerConfig)
        scheduler.setStepLength(config.stepLength)
        self.scheduler = scheduler
        windowTimesteps = try Tensor(config.windowTimesteps, shape: [config.windowFrames])
    }

    /// Number of calls before a driving chunk comes out (the warm-up chunks ahead of it).
    public var latencyCalls: Int { config.chunks - 1 }

    /// fuse_reference: writes the reference bank (reference UNet at t = 0 with the CLIP context),
    /// fills the queue with the reference latent noised to the older chunks' timesteps with
    /// `initNoise` (1, c, warmup_frames, h, w), and starts the motion bank with `referenceMotion`
    /// (1, tokens, dim). `warmupPose` (1, C0, warmup_frames, h, w) and `warmupMotion`
    /// (1, warmup_frames, tokens, dim) condition the transition frames that the first calls emit.
    public func start(referenceLatent: Tensor, clip: Tensor, referenceMotion: Tensor, warmupPose: Tensor,
                      warmupMotion: Tensor, initNoise: Tensor) throws {
        let m = config.temporal_window_size, w = config.warmup_frames
        guard referenceLatent.dim == 4, referenceLatent.shape[0] == 1 else {
            throw InferenceError("stream: reference latent must be (1, c, h, w), got \(referenceLatent.shape)")
        }
        guard warmupPose.dim == 5, warmupPose.shape[2] == w, warmupMotion.dim == 4, warmupMotion.shape[1] == w else {
            throw InferenceError("stream: warm-up pose (1, C0, \(w), h, w) and motion (1, \(w), tokens, dim) expected, "
                                 + "got \(warmupPose.shape) and \(warmupMotion.shape)")
        }
        let s = referenceLatent.shape
        guard initNoise.shape == [1, s[1], w, s[2], s[3]] else {
            throw InferenceError("stream: initial noise must be \([1, s[1], w, s[2], s[3]]), got \(initNoise.shape)")
        }
        try Torch.noGrad {
            control.clear()
            _ = try reference(referenceLatent, timestep: Tensor.zeros([1], device: referenceLatent.device),
                              encoderHiddenStates: clip)
            try control.update()
            control.clearWriter()
            let ts = try windowTimesteps.narrow(0, start: 0, length: w)
            let repeated = try referenceLatent.unsqueeze(2).expand([1, s[1], w, s[2], s[3]])
            queue = try scheduler.addNoise(repeated, noise: initNoise, timesteps: ts)
        }
        self.referenceLatent = referenceLatent
        self.clip = clip
        poseWindow = try (0..<(w / m)).map { try warmupPose.narrow(2, start: $0 * m, length: m) }
        motionWindow = try (0..<(w / m)).map { try warmupMotion.narrow(1, start: $0 * m, length: m) }
        motionBank = try referenceMotion.reshape([1, -1])
        calls = 0
        keyframeCalls = []
    }

    /// process_input for one driving chunk: pose features (1, C0, M, h, w), motion tokens
    /// (1, M, tokens, dim) and the noise of the new chunk (1, c, M, h, w). Emits the oldest chunk's x̂0.
    public func step(pose: Tensor, motion: Tensor, noise: Tensor) throws -> StreamStep {
        guard let queue, let referenceLatent, let clip, let bank = motionBank else {
            throw InferenceError("stream: start(referenceLatent:…) must run before the first step")
        }
        let m = config.temporal_window_size
        guard pose.dim == 5, pose.shape[2] == m, motion.dim == 4, motion.shape[1] == m else {
            throw InferenceError("stream: a chunk is \(m) frames: pose (1, C0, \(m), h, w) and motion (1, \(m), tokens, dim), "
                                 + "got \(pose.shape) and \(motion.shape)")
        }
        let s = referenceLatent.shape
        guard noise.shape == [1, s[1], m, s[2], s[3]] else {
            throw InferenceError("stream: chunk noise must be \([1, s[1], m, s[2], s[3]]), got \(noise.shape)")
        }
        poseWindow.append(pose)
        motionWindow.append(motion)
        return try Torch.noGrad {
            let p = try Tensor.cat(poseWindow, dim: 2)
            let mot = try Tensor.cat(motionWindow, dim: 1)
            let first = Int64(config.timesteps[0])
            let fresh = config.new_chunk == "noise"
                ? noise
                : try scheduler.addNoise(referenceLatent.unsqueeze(2).expand([1, s[1], m, s[2], s[3]]), noise: noise,
                                         timesteps: Tensor([first]))
            let x = try Tensor.cat([queue, fresh.to(queue.device, queue.dtype)], dim: 2)

            // History keyframe check on the window's first frame (the first frame this call emits).
            var add = false
            var check: (Double, Int)?
            if calls > config.hkm_warmup_chunks {
                let v = try mot.select(1, 0).reshape([1, -1]).to(bank.device, bank.dtype)
                let d = try (bank - v).square().sum([1]).sqrt().amin([0]).item()
                check = (d, bank.shape[0])
                if d > config.hkm_tau {
                    motionBank = try Tensor.cat([bank, v], dim: 0)
                    add = true
                }
            }

            let t = try windowTimesteps.to(x.device)
            let eps = try denoiser(x, timesteps: t, clip: clip, motion: mot, poseCond: p)
            let out = try scheduler.step(modelOutput: eps, timestep: t, sample: x)
            let x0 = out.predOriginalSample
            let emitted = try x0.narrow(2, start: 0, length: m)
            let rest = try out.prevSample.narrow(2, start: m, length: config.windowFrames - m)

            var added = false
            if add && control.keyframeCount < config.hkm_max_keyframes {
                control.clearWriter()
                _ = try reference(x0.select(2, 0), timestep: Tensor.zeros([1], device: x.device), encoderHiddenStates: clip)
                added = try control.updateKeyframe()
                control.clearWriter()
                if added {
                    keyframeCalls.append(calls)
                    logger.debug("stream: keyframe \(control.keyframeCount) added at call \(calls)")
                }
            }
            self.queue = try rest.contiguous()
            poseWindow.removeFirst()
            motionWindow.removeFirst()
            let result = StreamStep(latents: emitted, call: calls, addedKeyframe: added,
                                    check: check.map { (distance: $0.0, bankSize: $0.1) },
                                    windowIn: recordDebug ? x : nil, noisePred: recordDebug ? eps : nil)
            calls += 1
            return result
        }
    }
}

public struct InferenceError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
