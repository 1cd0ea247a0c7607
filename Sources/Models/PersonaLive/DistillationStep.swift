// DistillationStep.swift — one stage-2 training iteration in latent space (fewer-step appearance
// distillation, paper Algorithm 1), as train_stage2.py (PersonaLive fork) runs it: pure noise at
// t = timesteps_list[0], n − 1 denoising steps without gradient (the script's get_x0_from_eps, then
// DDIMScheduler.add_noise of x̂0 with fresh noise to the next t), the reference banks cleared and the
// reference UNet re-run (with gradient, new token-drop draws) before the n-th step, which runs with
// gradient and returns its x̂0. Decoding and the pixel losses belong to the caller (the trainer
// decodes with the VAE; the parity fixture takes the latent MSE). Every random draw is an input.
import NN
import Torch

/// The random draws of one iteration, in the script's order of use.
public struct DistillationDraws {
    /// n = update_step in 1...timesteps.count (random.randint(1, 4)).
    public var steps: Int
    /// The starting latent (b, 4, f, h, w): pure N(0, I) at timesteps[0] (no offset noise).
    public var noiseInit: Tensor
    /// Fresh noise after no-grad step k (k = 0..<n−1), re-noising x̂0 to timesteps[k + 1].
    /// nil draws them from the step's generator when needed (randn_like, in that order).
    public var renoise: [Tensor]?
    /// Uniform (b, L_j) token-drop draws of reference pass 0 (before step 0) and pass 1 (before
    /// the last step, only when n > 1); nil = drawn from the generator when the pass runs.
    public var bankDrawsPass0: [Tensor]?
    public var bankDrawsPass1: [Tensor]?
    /// Reference dropped (no reference pass, empty banks), pose features zeroed, motion zeroed.
    public var uncond: Bool
    public var dropPose: Bool
    public var dropMotion: Bool

    public init(steps: Int, noiseInit: Tensor, renoise: [Tensor]? = nil, bankDrawsPass0: [Tensor]? = nil,
                bankDrawsPass1: [Tensor]? = nil, uncond: Bool = false, dropPose: Bool = false, dropMotion: Bool = false) {
        self.steps = steps
        self.noiseInit = noiseInit
        self.renoise = renoise
        self.bankDrawsPass0 = bankDrawsPass0
        self.bankDrawsPass1 = bankDrawsPass1
        self.uncond = uncond
        self.dropPose = dropPose
        self.dropMotion = dropMotion
    }
}

/// The conditioning of the batch (front-end outputs).
public struct DistillationInputs {
    public var referenceLatent: Tensor  // (b, 4, h, w)
    public var clip: Tensor             // (b, 1, D)
    public var poseFeatures: Tensor     // (b, C0, f, h, w)
    public var motion: Tensor           // (b, f, 32, 16) or (b, 32, 16)

    public init(referenceLatent: Tensor, clip: Tensor, poseFeatures: Tensor, motion: Tensor) {
        self.referenceLatent = referenceLatent
        self.clip = clip
        self.poseFeatures = poseFeatures
        self.motion = motion
    }
}

public struct DistillationOutputs {
    /// Per step s = 0..<n: the denoiser's input, its ε prediction and x̂0 (the last with gradient).
    public var stepInputs: [Tensor]
    public var stepEps: [Tensor]
    public var stepX0: [Tensor]
    /// The timesteps used, timesteps[0..<n].
    public var timesteps: [Int]
    /// x̂0 of the trained (last) step, carrying the gradient.
    public var x0: Tensor { stepX0[stepX0.count - 1] }
    /// The trained step's timestep (the discriminator's condition).
    public var lastTimestep: Int { timesteps[timesteps.count - 1] }
}

public struct DistillationStep {
    public let denoiser: UNet3DConditionModel
    public let reference: UNet2DConditionModel
    public let control: ReferenceAttentionControl
    public let scheduler: DDIMScheduler
    /// timesteps_list of the script.
    public var timesteps: [Int] = [999, 666, 333, 0]
    public var bankDropRatio: Double = 0.3
    /// Re-noise each no-gradient x̂0 with that step's ε̂ (the deterministic DDIM update, as
    /// sampling does) instead of fresh noise (the script). Not the reference's; off by default.
    public var renoiseWithPrediction = false

    public init(denoiser: UNet3DConditionModel, reference: UNet2DConditionModel, control: ReferenceAttentionControl,
                scheduler: DDIMScheduler) {
        self.denoiser = denoiser
        self.reference = reference
        self.control = control
        self.scheduler = scheduler
    }

    /// get_x0_from_eps of the script: √(1/ᾱ)·x − √(1/ᾱ − 1)·ε.
    public func x0(fromEps eps: Tensor, noisy: Tensor, timesteps t: Tensor) throws -> Tensor {
        let a = try scheduler.alphaProd(t).to(noisy.device)
        let shape = [a.shape[0]] + [Int](repeating: 1, count: noisy.dim - 1)
        let inv = try (1.0 / a).reshape(shape)
        return try inv.sqrt() * noisy - (inv - 1).sqrt() * eps
    }

    /// A no-gradient step's x̂0 taken to timestep `t`: with that step's ε̂ (renoiseWithPrediction,
    /// the DDIM update), else with `draw` or fresh noise from `generator` (the script's add_noise).
    public func renoise(_ x0: Tensor, eps: Tensor, draw: Tensor?, to t: Int, generator: Generator?) throws -> Tensor {
        let noise = try renoiseWithPrediction ? eps : draw ?? Tensor.randn(x0.shape, generator: generator, device: x0.device)
        let tt = try Tensor.full([x0.shape[0]], Double(t), dtype: .int64, device: x0.device)
        return try scheduler.addNoise(x0, noise: noise, timesteps: tt).detach()
    }

    /// Runs the iteration. Call it with gradient recording on: the no-grad prefix switches it off
    /// itself (synchronously, on this thread). `generator` supplies draws left nil.
    public func callAsFunction(_ inputs: DistillationInputs, draws: DistillationDraws,
                               generator: Generator? = nil) throws -> DistillationOutputs {
        let n = draws.steps
        guard n >= 1, n <= timesteps.count else {
            throw TorchError("DistillationStep: update_step must be in 1...\(timesteps.count), got \(n)")
        }
        if let r = draws.renoise, r.count < n - 1 {
            throw TorchError("DistillationStep: \(r.count) re-noise draws given, \(n - 1) needed")
        }
        let device = draws.noiseInit.device
        let b = draws.noiseInit.shape[0]
        func tensor(_ t: Int) throws -> Tensor {
            try Tensor.full([b], Double(t), dtype: .int64, device: device)
        }
        let pose = draws.dropPose ? try Tensor.zeros(inputs.poseFeatures.shape, device: device) : inputs.poseFeatures
        let motion = draws.dropMotion ? try Tensor.zeros(inputs.motion.shape, device: device) : inputs.motion

        // Net.forward's reference branch: clear, run the writer at t = 0, copy (with token drop).
        func referencePass(_ bankDraws: [Tensor]?) throws {
            control.clear()
            guard !draws.uncond else { return }
            let t0 = try Tensor.zeros([b], dtype: .int64, device: device)
            _ = try reference(inputs.referenceLatent, timestep: t0, encoderHiddenStates: inputs.clip)
            if let d = bankDraws {
                try control.update(dropRatio: bankDropRatio, draws: d)
            } else {
                try control.update(dropRatio: bankDropRatio, generator: generator)
            }
        }
        func denoise(_ x: Tensor, _ t: Int) throws -> (eps: Tensor, x0: Tensor) {
            let tt = try tensor(t)
            let eps = try denoiser(x, timesteps: tt, clip: inputs.clip, motion: motion,
                                   poseCond: draws.dropPose ? nil : pose)
            return (eps, try self.x0(fromEps: eps, noisy: x, timesteps: tt))
        }

        var out = DistillationOutputs(stepInputs: [], stepEps: [], stepX0: [], timesteps: Array(timesteps[0..<n]))
        var x = draws.noiseInit
        if n > 1 {
            try Torch.noGrad {
                try referencePass(draws.bankDrawsPass0)
                for s in 0..<(n - 1) {
                    let (eps, x0) = try denoise(x, timesteps[s])
                    out.stepInputs.append(x)
                    out.stepEps.append(eps)
                    out.stepX0.append(x0)
                    x = try renoise(x0, eps: eps, draw: draws.renoise?[s], to: timesteps[s + 1], generator: generator)
                }
            }
            // Banks cleared, the reference UNet re-run with gradient for the trained step.
            try referencePass(draws.bankDrawsPass1)
        } else {
            try referencePass(draws.bankDrawsPass0)
        }
        let (eps, x0) = try denoise(x, timesteps[n - 1])
        control.clear()
        out.stepInputs.append(x)
        out.stepEps.append(eps)
        out.stepX0.append(x0)
        return out
    }
}
