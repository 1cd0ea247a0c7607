// Sampling.swift — offline sampling shared by training validation and evaluation, as diffusers
// pipelines do it: DDIM from pure noise in N steps (pipeline `__call__` loop) and classifier-free
// guidance (ε_u + s·(ε_c − ε_u)). The streaming loop lives in StreamingEngine.swift.
import Logging
import Models
import Torch

public enum Sampling {
    /// Classifier-free guidance as diffusers pipelines combine it: ε_u + scale·(ε_c − ε_u); the
    /// unconditional branch only runs when scale > 1.
    public static func guided(scale: Double, cond: () throws -> Tensor, uncond: () throws -> Tensor) throws -> Tensor {
        let c = try cond()
        guard scale > 1 else { return c }
        let u = try uncond()
        return try u + (c - u) * scale
    }

    /// DDIM sampling from pure noise of `shape` in `steps` steps; `eps(latents, timesteps)` is the
    /// model's noise prediction for the whole batch.
    public static func ddim(shape: [Int], steps: Int, scheduler config: DDIMScheduler.Config, generator g: Generator,
                            device: Device, logger: Logger, eps: (Tensor, Tensor) throws -> Tensor) throws -> Tensor {
        let sampler = try DDIMScheduler(config)
        try sampler.setTimesteps(steps)
        return try loop(sampler, timesteps: sampler.timesteps, start: Tensor.randn(shape, generator: g, device: device),
                        logger: logger, eps: eps)
    }

    /// DDIM from `noise` over explicit `timesteps` with PersonaLive's step length t₀ − t₁
    /// (`set_step_length`: [999, 666, 333, 0], the t = 0 step returning x̂0).
    public static func ddim(noise: Tensor, timesteps: [Int], scheduler config: DDIMScheduler.Config, logger: Logger,
                            eps: (Tensor, Tensor) throws -> Tensor) throws -> Tensor {
        let sampler = try DDIMScheduler(config)
        sampler.setStepLength(timesteps.count > 1 ? timesteps[0] - timesteps[1] : config.num_train_timesteps)
        return try loop(sampler, timesteps: timesteps, start: noise, logger: logger, eps: eps)
    }

    static func loop(_ sampler: DDIMScheduler, timesteps: [Int], start: Tensor, logger: Logger,
                     eps: (Tensor, Tensor) throws -> Tensor) throws -> Tensor {
        var latents = start
        let n = start.shape[0]
        for t in timesteps {
            let e = try eps(latents, Tensor.full([n], Double(t), dtype: .int64, device: start.device))
            let out = try sampler.step(modelOutput: e, timestep: Tensor([Int64(t)]), sample: latents)
            latents = out.prevSample
            if logger.logLevel <= .debug {
                let (x0s, es, ss) = (try out.predOriginalSample.std().item(), try e.std().item(), try latents.std().item())
                logger.debug("sampling t=\(t): x0 std \(x0s), eps std \(es), sample std \(ss)")
            }
        }
        return latents
    }
}
