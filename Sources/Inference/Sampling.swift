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
        var latents = try Tensor.randn(shape, generator: g, device: device)
        for t in sampler.timesteps {
            let e = try eps(latents, Tensor.full([shape[0]], Double(t), dtype: .int64, device: device))
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
