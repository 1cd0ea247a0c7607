// HybridMotionStep.swift — one stage-1 training iteration in latent space, as train_stage1.py
// (PersonaLive) computes it: offset noise, uniform t, add_noise, the `Net` forward (reference UNet
// writer → bank token drop → UNet3D reader with pose features after conv_in and motion tokens in
// the motion modules), ε turned into x̂0 by the script's formula, and the two latent losses.
// Every random draw is an input, so the trainer draws them and the parity check injects them.
import NN
import Torch

/// The random draws of one iteration (torch global generator / python random in the script).
public struct HybridMotionDraws {
    public var noise: Tensor            // (b, 4, f, h, w)
    public var noiseOffset: Tensor?     // (b, 4, 1, 1, 1) when noise_offset > 0
    public var timesteps: Tensor        // (b,) int64 in 0..<1000
    public var bankDraws: [Tensor]?     // uniform (b, L_j) per paired block; nil = draw from a generator
    public var uncond: Bool             // reference dropped: no reference pass, empty banks
    public var dropPose: Bool
    public var dropMotion: Bool

    public init(noise: Tensor, noiseOffset: Tensor?, timesteps: Tensor, bankDraws: [Tensor]?, uncond: Bool,
                dropPose: Bool, dropMotion: Bool) {
        self.noise = noise
        self.noiseOffset = noiseOffset
        self.timesteps = timesteps
        self.bankDraws = bankDraws
        self.uncond = uncond
        self.dropPose = dropPose
        self.dropMotion = dropMotion
    }
}

/// What the front-ends produced for the batch (PoseGuider, motion encoder, CLIP, VAE).
public struct HybridMotionInputs {
    public var referenceLatent: Tensor  // (b, 4, h, w)
    public var targetLatent: Tensor     // (b, 4, f, h, w)
    public var clip: Tensor             // (b, 1, D)
    public var poseFeatures: Tensor     // (b, C0, f, h, w)
    public var motion: Tensor           // (b, 32, 16) or (b, f, 32, 16)
    public var faceMask: Tensor         // (b, 1, H, W) in {0, 1}
    public var localMask: Tensor        // (b, 1, H, W) in {0, 1}: eyes + mouth

    public init(referenceLatent: Tensor, targetLatent: Tensor, clip: Tensor, poseFeatures: Tensor, motion: Tensor,
                faceMask: Tensor, localMask: Tensor) {
        self.referenceLatent = referenceLatent
        self.targetLatent = targetLatent
        self.clip = clip
        self.poseFeatures = poseFeatures
        self.motion = motion
        self.faceMask = faceMask
        self.localMask = localMask
    }
}

public struct HybridMotionOutputs {
    public var noise: Tensor
    public var noisyLatents: Tensor
    public var facialMask: Tensor
    public var modelPred: Tensor
    public var x0: Tensor
    public var lossMSE: Tensor
    public var lossLocal: Tensor
    public var loss: Tensor
}

public struct HybridMotionStep {
    public let denoiser: UNet3DConditionModel
    public let reference: UNet2DConditionModel
    public let control: ReferenceAttentionControl
    public let scheduler: DDIMScheduler
    public var noiseOffset: Double = 0.05
    public var bankDropRatio: Double = 0.3
    public var lossWeights: (mse: Double, local: Double) = (1, 1)
    /// diffusers' `snr_gamma` (Min-SNR-γ): > 0 weighs each sample's x̂0 errors by min(SNR_t, γ), the
    /// same as weighing its ε errors by min(SNR_t, γ)/SNR_t; 0 keeps the reference's loss.
    public var snrGamma: Double = 0

    public init(denoiser: UNet3DConditionModel, reference: UNet2DConditionModel, control: ReferenceAttentionControl,
                scheduler: DDIMScheduler) {
        self.denoiser = denoiser
        self.reference = reference
        self.control = control
        self.scheduler = scheduler
    }

    /// facial_mask = nearest(face) + nearest(local) at latent size, repeated over 4 channels and
    /// given a frame axis: (b, 4, 1, h, w) with values {0, 1, 2}.
    public static func facialMask(face: Tensor, local: Tensor, latentSize: (Int, Int), channels: Int = 4) throws -> Tensor {
        let f = try F.interpolate(face, size: latentSize, mode: .nearest)
        let l = try F.interpolate(local, size: latentSize, mode: .nearest)
        return try f.unsqueeze(2).repeated([1, channels, 1, 1, 1]) + l.unsqueeze(2).repeated([1, channels, 1, 1, 1])
    }

    /// get_x0_from_eps of the script: √(1/ᾱ)·x − √(1/ᾱ − 1)·ε (rounds differently from the
    /// textbook form in fp32, so keep this one).
    public func x0(fromEps eps: Tensor, noisy: Tensor, timesteps: Tensor) throws -> Tensor {
        let a = try scheduler.alphaProd(timesteps).to(noisy.device)
        let shape = [a.shape[0]] + [Int](repeating: 1, count: noisy.dim - 1)
        let inv = try (1.0 / a).reshape(shape)
        return try inv.sqrt() * noisy - (inv - 1).sqrt() * eps
    }

    /// mean over samples of min(SNR_t, γ) · mean((a − b)²), SNR_t = ᾱ_t/(1 − ᾱ_t); `alphaProd` (b,).
    public static func snrWeightedMSE(_ a: Tensor, _ b: Tensor, alphaProd: Tensor, gamma: Double) throws -> Tensor {
        let w = try (alphaProd / (1.0 - alphaProd)).clamp(max: gamma)
        let shape = [a.shape[0]] + [Int](repeating: 1, count: a.dim - 1)
        return try ((a - b).square() * w.reshape(shape).to(a.dtype)).mean()
    }

    /// `generator` (and `shard`, for a data-parallel rank) draw the reference-bank token drops
    /// when `draws.bankDraws` is nil.
    public func callAsFunction(_ inputs: HybridMotionInputs, draws: HybridMotionDraws, generator: Generator? = nil,
                               shard: BatchShard = .whole) throws -> HybridMotionOutputs {
        let latents = inputs.targetLatent
        var noise = draws.noise
        if noiseOffset > 0, let off = draws.noiseOffset {
            noise = try noise + off * Double(Float(noiseOffset))
        }
        let noisy = try scheduler.addNoise(latents, noise: noise, timesteps: draws.timesteps)
        let s = latents.shape
        let mask = try Self.facialMask(face: inputs.faceMask, local: inputs.localMask, latentSize: (s[3], s[4]),
                                       channels: s[1])

        // Net.forward
        control.clear()
        if !draws.uncond {
            let t0 = try Tensor.zeros([s[0]], dtype: .int64, device: latents.device)
            _ = try reference(inputs.referenceLatent, timestep: t0, encoderHiddenStates: inputs.clip)
            if let d = draws.bankDraws {
                try control.update(dropRatio: bankDropRatio, draws: d)
            } else {
                try control.update(dropRatio: bankDropRatio, generator: generator, shard: shard)
            }
        }
        let pose = draws.dropPose ? try Tensor.zeros(inputs.poseFeatures.shape, device: latents.device) : inputs.poseFeatures
        let motion = draws.dropMotion ? try Tensor.zeros(inputs.motion.shape, device: latents.device) : inputs.motion
        let eps = try denoiser(noisy, timesteps: draws.timesteps, clip: inputs.clip, motion: motion,
                               poseCond: draws.dropPose ? nil : pose)
        control.clear()

        let x0 = try x0(fromEps: eps, noisy: noisy, timesteps: draws.timesteps)
        let lossMSE: Tensor, lossLocal: Tensor
        if snrGamma > 0 {
            let a = try scheduler.alphaProd(draws.timesteps).to(latents.device)
            lossMSE = try Self.snrWeightedMSE(x0, latents, alphaProd: a, gamma: snrGamma)
            lossLocal = try Self.snrWeightedMSE(x0 * mask, latents * mask, alphaProd: a, gamma: snrGamma)
        } else {
            lossMSE = try F.mseLoss(x0, latents)
            lossLocal = try F.mseLoss(x0 * mask, latents * mask)
        }
        let loss = try lossMSE * lossWeights.mse + lossLocal * lossWeights.local
        return HybridMotionOutputs(noise: noise, noisyLatents: noisy, facialMask: mask, modelPred: eps, x0: x0,
                                   lossMSE: lossMSE, lossLocal: lossLocal, loss: loss)
    }
}
