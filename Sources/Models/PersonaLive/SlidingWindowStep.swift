// SlidingWindowStep.swift — one stage-3 training iteration in latent space (sliding streaming
// training, paper Algorithm 2), as train_stage3.py (PersonaLive fork, :574, :614-776) runs it over
// one clip of F = K·M frames: the buffer starts as the ground-truth latents of the first N−1
// chunks noised to [0, 333, 666] (oldest least noisy) and pure noise after; slide i = 0…K−N
// denoises the 16-frame window [M·i, M·i + N·M) at per-frame timesteps [0×M, 333×M, 666×M, 999×M],
// writes chunk 0's x̂0 back (emitted) and re-noises chunks 1…N−1's x̂0 with fresh noise one level
// down. Slides i with i % (N − 1) == 0 (0, 3, 6 for 40 frames) run with gradient and hand x̂0 of
// the whole window to the caller (decode + loss + optimizer step there); the others run without
// gradient. Every slide reads the buffer detached, so no gradient crosses slides. The reference
// UNet is frozen: it runs once per clip without gradient and its banks (token drop) stay fixed.
// Every random draw can be given (the parity fixture) or comes from the generator.
import NN
import Torch

/// The random draws of one clip, in the script's order of use.
public struct SlidingWindowDraws {
    /// torch.randn_like(latents) (b, c, F, h, w): noises chunks 0…N−2 and is the pure noise after.
    public var noiseInit: Tensor
    /// Uniform (b, L_j) token-drop draws of the one reference pass; nil = from the generator.
    public var bankDraws: [Tensor]?
    /// Fresh noise of slide i, (b, c, (N−1)·M, h, w); nil = drawn from the generator each slide.
    public var renoise: [Tensor]?
    /// Reference dropped (empty banks), pose features zeroed, motion zeroed (per clip).
    public var uncond: Bool
    public var dropPose: Bool
    public var dropMotion: Bool

    public init(noiseInit: Tensor, bankDraws: [Tensor]? = nil, renoise: [Tensor]? = nil, uncond: Bool = false,
                dropPose: Bool = false, dropMotion: Bool = false) {
        self.noiseInit = noiseInit
        self.bankDraws = bankDraws
        self.renoise = renoise
        self.uncond = uncond
        self.dropPose = dropPose
        self.dropMotion = dropMotion
    }
}

/// The conditions of the clip (front-end outputs, computed once per clip without gradient).
public struct SlidingWindowInputs {
    public var referenceLatent: Tensor  // (b, c, h, w)
    public var clip: Tensor             // (b, 1, D)
    public var poseFeatures: Tensor     // (b, C0, F, h, w)
    public var motion: Tensor           // (b, F, tokens, dim)
    public var targetLatents: Tensor    // (b, c, F, h, w) ground truth

    public init(referenceLatent: Tensor, clip: Tensor, poseFeatures: Tensor, motion: Tensor, targetLatents: Tensor) {
        self.referenceLatent = referenceLatent
        self.clip = clip
        self.poseFeatures = poseFeatures
        self.motion = motion
        self.targetLatents = targetLatents
    }
}

/// One slide as it ran.
public struct SlideRecord {
    public let index: Int
    /// Frames [start, start + window) of the clip.
    public let start: Int
    public let withGradient: Bool
    /// The window fed to the denoiser and its x̂0 (detached).
    public let input: Tensor
    public let x0: Tensor
    /// x̂0 of chunk 0, written back to the buffer as the emitted (clean) chunk.
    public var emitted: Tensor { get throws { try x0.narrow(2, start: 0, length: chunkFrames) } }
    let chunkFrames: Int
}

/// What a gradient slide hands the caller: x̂0 of the window with gradient, and where it lies.
public struct GradientSlide {
    public let index: Int
    /// Ordinal among the clip's gradient slides (0, 1, 2 for 40 frames).
    public let ordinal: Int
    public let start: Int
    /// x̂0 of the 16-frame window (b, c, N·M, h, w), carrying the gradient.
    public let x0: Tensor
    /// The ground-truth latents of the window (b, c, N·M, h, w).
    public let target: Tensor
    /// Per-frame timesteps of the window, (N·M,) int64 (the discriminator's condition).
    public let timesteps: Tensor
}

public struct SlidingWindowOutputs {
    public var slides: [SlideRecord]
    /// The latent buffer after the last slide (b, c, F, h, w), detached.
    public var finalBuffer: Tensor
    /// (N·M,) int64 per-frame timesteps of a window.
    public var windowTimesteps: Tensor
}

public struct SlidingWindowStep {
    public let denoiser: UNet3DConditionModel
    public let reference: UNet2DConditionModel
    public let control: ReferenceAttentionControl
    public let scheduler: DDIMScheduler
    /// timesteps_list of the script (noisiest first); the window holds one chunk per entry.
    public var timesteps: [Int] = [999, 666, 333, 0]
    /// temporal_window_size M: frames per chunk.
    public var chunkFrames = 4
    public var bankDropRatio: Double = 0.3

    public init(denoiser: UNet3DConditionModel, reference: UNet2DConditionModel, control: ReferenceAttentionControl,
                scheduler: DDIMScheduler) {
        self.denoiser = denoiser
        self.reference = reference
        self.control = control
        self.scheduler = scheduler
    }

    /// Chunks in a window (N).
    public var windowChunks: Int { timesteps.count }
    public var windowFrames: Int { windowChunks * chunkFrames }

    /// Slides over a clip of `frames` frames: K − N + 1 with K = frames / M chunks.
    public func slideCount(frames: Int) -> Int { frames / chunkFrames - windowChunks + 1 }

    /// The script's gradient slides: i % (N − 1) == 0 (train_stage3.py: i % (temporal_adaptive_step − 1)).
    public func isGradientSlide(_ i: Int) -> Bool { i % max(1, windowChunks - 1) == 0 }

    /// The gradient slides of a clip of `frames` frames (0, 3, 6 for 40 frames).
    public func gradientSlides(frames: Int) -> [Int] { (0..<max(0, slideCount(frames: frames))).filter(isGradientSlide) }

    /// reversed(timesteps).repeat_interleave(M), (N·M,) int64.
    public func windowTimesteps(device: Device = .cpu) throws -> Tensor {
        let v = timesteps.reversed().flatMap { Array(repeating: Int64($0), count: chunkFrames) }
        return try Tensor(v, shape: [v.count]).to(device)
    }

    /// get_x0_from_eps of the script per frame: √(1/ᾱ)·x − √(1/ᾱ − 1)·ε, ᾱ of each frame's t.
    func x0(fromEps eps: Tensor, noisy: Tensor, frameTimesteps t: Tensor) throws -> Tensor {
        let a = try scheduler.alphaProd(t).to(noisy.device, noisy.dtype)
        let inv = try (1.0 / a).reshape([1, 1, a.shape[0], 1, 1])
        return try inv.sqrt() * noisy - (inv - 1).sqrt() * eps
    }

    /// Runs the clip. Call it with gradient recording on; the no-grad slides and the reference
    /// pass switch it off themselves (synchronously). `onGradientSlide` receives each gradient
    /// slide's x̂0 (build the loss, backward, step the optimizer there: later slides then use the
    /// updated weights, as the script does).
    public func callAsFunction(_ inputs: SlidingWindowInputs, draws: SlidingWindowDraws, generator: Generator? = nil,
                               onGradientSlide: (GradientSlide) throws -> Void) throws -> SlidingWindowOutputs {
        let target = inputs.targetLatents
        guard target.dim == 5 else {
            throw TorchError("SlidingWindowStep: target latents must be (b, c, F, h, w), got \(target.shape)")
        }
        let (b, frames) = (target.shape[0], target.shape[2])
        let m = chunkFrames, n = windowChunks, w = windowFrames
        guard frames % m == 0, frames >= w else {
            throw TorchError("SlidingWindowStep: a clip of \(frames) frames does not hold whole \(m)-frame chunks and at least one \(w)-frame window")
        }
        guard draws.noiseInit.shape == target.shape else {
            throw TorchError("SlidingWindowStep: initial noise must be \(target.shape), got \(draws.noiseInit.shape)")
        }
        guard inputs.poseFeatures.dim == 5, inputs.poseFeatures.shape[2] == frames,
              inputs.motion.dim == 4, inputs.motion.shape[1] == frames else {
            throw TorchError("SlidingWindowStep: pose features (b, C0, \(frames), h, w) and motion (b, \(frames), tokens, dim) expected, got \(inputs.poseFeatures.shape) and \(inputs.motion.shape)")
        }
        let slides = slideCount(frames: frames)
        if let r = draws.renoise, r.count < slides {
            throw TorchError("SlidingWindowStep: \(r.count) re-noise draws given, \(slides) needed")
        }
        let device = target.device
        let tWin = try windowTimesteps(device: device)
        // The UNet takes per-frame timesteps in (b f) order.
        let tUNet = b == 1 ? tWin : try tWin.unsqueeze(0).expand([b, w]).reshape([b * w])
        let tOlder = try tWin.narrow(0, start: 0, length: w - m)
        let pose = draws.dropPose ? try Tensor.zeros(inputs.poseFeatures.shape, device: device) : inputs.poseFeatures
        let motion = draws.dropMotion ? try Tensor.zeros(inputs.motion.shape, device: device) : inputs.motion

        var buffer: Tensor = try Torch.noGrad {
            // Frozen reference UNet once per clip; its banks stay for every slide.
            control.clear()
            if !draws.uncond {
                let t0 = try Tensor.zeros([b], dtype: .int64, device: device)
                _ = try reference(inputs.referenceLatent, timestep: t0, encoderHiddenStates: inputs.clip)
                if let d = draws.bankDraws {
                    try control.update(dropRatio: bankDropRatio, draws: d)
                } else {
                    try control.update(dropRatio: bankDropRatio, generator: generator)
                }
                control.clearWriter()
            }
            let noise = draws.noiseInit
            let head = try scheduler.addNoise(target.narrow(2, start: 0, length: w - m),
                                              noise: noise.narrow(2, start: 0, length: w - m), timesteps: tOlder)
            return try Tensor.cat([head, noise.narrow(2, start: w - m, length: frames - (w - m))], dim: 2)
        }
        defer { control.clear() }

        var records: [SlideRecord] = []
        var ordinal = 0
        for i in 0..<slides {
            let l = i * m
            // Contiguous windows: LibTorch's CPU GroupNorm backward picks its channels-last kernel
            // for some strided views of a frame slice, and that kernel crashed (null dereference)
            // when the GroupNorm weights take no gradient (the frozen non-temporal layers).
            let x = try buffer.narrow(2, start: l, length: w).contiguous().detach()
            let p = try pose.narrow(2, start: l, length: w).contiguous()
            let mot = try motion.narrow(1, start: l, length: w).contiguous()
            func forward() throws -> Tensor {
                let eps = try denoiser(x, timesteps: tUNet, clip: inputs.clip, motion: mot,
                                       poseCond: draws.dropPose ? nil : p)
                return try self.x0(fromEps: eps, noisy: x, frameTimesteps: tWin)
            }
            let grad = isGradientSlide(i)
            let x0: Tensor = grad ? try forward() : try Torch.noGrad { try forward() }
            let rest = try x0.detach().narrow(2, start: m, length: w - m)
            let fresh = try draws.renoise?[i] ?? Tensor.randn(rest.shape, generator: generator, device: device)
            if grad {
                try onGradientSlide(GradientSlide(index: i, ordinal: ordinal, start: l, x0: x0,
                                                  target: target.narrow(2, start: l, length: w), timesteps: tWin))
                ordinal += 1
            }
            try Torch.noGrad {
                let renoised = try scheduler.addNoise(rest, noise: fresh, timesteps: tOlder)
                var parts: [Tensor] = []
                if l > 0 { parts.append(try buffer.narrow(2, start: 0, length: l)) }
                parts.append(try x0.detach().narrow(2, start: 0, length: m))
                parts.append(renoised)
                if l + w < frames { parts.append(try buffer.narrow(2, start: l + w, length: frames - l - w)) }
                buffer = try Tensor.cat(parts, dim: 2)
            }
            records.append(SlideRecord(index: i, start: l, withGradient: grad, input: x, x0: try x0.detach(), chunkFrames: m))
        }
        return SlidingWindowOutputs(slides: records, finalBuffer: buffer, windowTimesteps: tWin)
    }
}
