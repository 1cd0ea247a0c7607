// UNetStage.swift — the base 2D UNet both stage-1 UNets start from, trained as
// lambdalabs/sd-image-variations-diffusers was (diffusers train_text_to_image.py with the CLIP
// image embedding of the image itself as the condition): ε-prediction MSE on VAE latents, uniform
// t, offset noise, the embedding zeroed with probability `uncond_ratio`. The pretrained SD UNet
// cannot be downloaded here, so the embedded default makes its own; `stage1.base_model_path`
// then names this stage's checkpoint (or a real diffusers folder).
import Data
import Foundation
import Inference
import Logging
import Media
import Models
import NN
import Torch

public struct UNetStageSection: Codable, Sendable {
    /// A `train` checkpoint folder of the `vae` stage (frozen).
    public var vae_checkpoint: String = ""
    /// CLIP image encoder weights; empty means a frozen random encoder (as in stage 1).
    public var image_encoder_path: String = ""
    public var image_size: Int = 64
    /// ≤ 0 estimates 1/std of the VAE latents, exactly as stage 1 does with the same VAE and data.
    public var latent_scale: Double = 0.18215
    public var noise_offset: Double = 0.05
    public var uncond_ratio: Double = 0.1
    public var scheduler: DDIMScheduler.Config = Stage1Section.defaultScheduler

    enum K: String, CodingKey, CaseIterable {
        case vae_checkpoint, image_encoder_path, image_size, latent_scale, noise_offset, uncond_ratio, scheduler
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        let d = UNetStageSection()
        vae_checkpoint = try c.value(.vae_checkpoint, default: d.vae_checkpoint)
        image_encoder_path = try c.value(.image_encoder_path, default: d.image_encoder_path)
        image_size = try c.value(.image_size, default: d.image_size)
        latent_scale = try c.value(.latent_scale, default: d.latent_scale)
        noise_offset = try c.value(.noise_offset, default: d.noise_offset)
        uncond_ratio = try c.value(.uncond_ratio, default: d.uncond_ratio)
        scheduler = try c.value(.scheduler, default: d.scheduler)
    }
}

public final class UNetStage: PairFedStage, TrainingStage {
    /// The reference UNet's architecture (`model.reference_unet`) with its output layers.
    public let unet: UNet2DConditionModel
    let section: UNetStageSection
    let vae: AutoencoderKL
    let imageEncoder: CLIPVisionModelWithProjection
    let clipProcessor: CLIPImageProcessor
    let scheduler: DDIMScheduler
    let latentScale: Double
    /// VAE moments and CLIP embeddings of every frame (data.cache_latents), else nil.
    let cache: LazyFeatureCache?

    public init(config: TrainingConfig, logger: Logger) throws {
        let precision = try Precision(solver: config.solver, logger: logger)
        let section = try ConfigLoader.section(UNetStageSection.self, config.stageSection, name: "unet", file: config.sourcePath)
        self.section = section
        unet = try UNet2DConditionModel(ConfigLoader.section(UNet2DConditionModel.Config.self, config.model["reference_unet"],
                                                             name: "model.reference_unet", file: config.sourcePath))
        try precision.placeTrained(unet)
        let (encoder, processor) = try FrozenNetworks.imageEncoder(config, path: section.image_encoder_path, section: "unet",
                                                                   precision: precision, logger: logger)
        (imageEncoder, clipProcessor) = (encoder, processor)
        let vae = try FrozenNetworks.vae(config, path: section.vae_checkpoint, section: "unet", precision: precision,
                                         logger: logger)
        self.vae = vae
        scheduler = try DDIMScheduler(section.scheduler)
        let ds = try DatasetReader(path: config.data.dataset, logger: logger)
        latentScale = try FrozenNetworks.latentScale(section.latent_scale, vae: vae, dataset: ds, config: config,
                                                     imageSize: section.image_size, precision: precision, logger: logger)
        let feeds = try stageFeeds(config, dataset: ds, imageSize: section.image_size, device: precision.device)
        cache = config.data.cache_latents
            ? try LazyFeatureCache(sampler: feeds.train.sampler,
                                   encoders: .init(vae: vae, imageEncoder: encoder, processor: processor,
                                                   motionExtractor: nil, precision: precision),
                                   device: precision.device, logger: logger)
            : nil
        super.init(config: config, precision: precision, feeds: feeds)
    }

    public var savedModules: [(String, Module)] { [("unet", unet)] }
    public var trainableParameters: [(String, Tensor)] { unet.namedParameters().map { ("unet.\($0.0)", $0.1) } }

    /// Latents and CLIP embeddings of a batch's target frames (frozen networks, no gradients).
    func conditions(_ b: PairTensors, sample: Bool, generator: Generator?) throws -> (latents: Tensor, clip: Tensor) {
        try Torch.noGrad {
            if let cache = try cache?.get() {
                return (try cache.latents(b.clipIDs, b.targetIndices, scale: latentScale, sample: sample, generator: generator),
                        try cache.clipEmbeds(b.clipIDs, b.targetIndices)!)
            }
            return (try FrozenNetworks.encode(vae, b.target, scale: latentScale, sample: sample, generator: generator,
                                              precision: precision),
                    try FrozenNetworks.clipEmbeds(imageEncoder, clipProcessor, b.target, precision: precision))
        }
    }

    /// ε-prediction MSE for latents, noise and timesteps given; `keep` (B) zeroes the CLIP
    /// embedding where it is 0.
    func loss(latents: Tensor, clip: Tensor, noise: Tensor, timesteps: Tensor, keep: Tensor) throws -> Tensor {
        let noisy = try scheduler.addNoise(latents, noise: noise, timesteps: timesteps)
        let cond = try clip * keep.view([-1, 1, 1])
        let eps = try unet(noisy, timestep: timesteps, encoderHiddenStates: cond)
        return try F.mseLoss(eps.to(.float32), noise)
    }

    public func losses(sample: Int, generator: Generator) throws -> [String: Tensor] {
        let (latents, clip) = try conditions(feed.batch(sample / batchSize), sample: true, generator: generator)
        let s = latents.shape, dev = precision.device
        // Draws from the run's CPU generator in a fixed order: noise, offset, t, condition dropout.
        var noise = try Tensor.randn(s, generator: generator, device: dev)
        if section.noise_offset > 0 {
            noise = try noise + Tensor.randn([s[0], s[1], 1, 1], generator: generator, device: dev) * section.noise_offset
        }
        let t = try Tensor.randint(0, scheduler.config.num_train_timesteps, [s[0]], generator: generator, device: dev)
        let keep = try Tensor.rand([s[0]], generator: generator, device: dev).ge(section.uncond_ratio).to(.float32)
        return ["loss": try loss(latents: latents, clip: clip, noise: noise, timesteps: t, keep: keep)]
    }

    /// The loss with fixed draws on the val frames, and 20-step DDIM samples from each val frame's
    /// CLIP embedding (grid.png: image | VAE reconstruction | sample), guided by
    /// validation.guidance_scale against the zeroed embedding.
    public func validate(step: Int, directory: URL, logger: Logger) throws -> [String: Double] {
        let b = try valFeed.batch(0)
        let images = b.target
        let g = try Generator(seed: config.validation.seed)
        let (latents, clip) = try conditions(b, sample: false, generator: nil)
        let s = latents.shape, dev = precision.device
        let noise = try Tensor.randn(s, generator: g, device: dev)
        let t = try Tensor.randint(0, scheduler.config.num_train_timesteps, [s[0]], generator: g, device: dev)
        let l = try loss(latents: latents, clip: clip, noise: noise, timesteps: t, keep: Tensor.ones([s[0]], device: dev))
        // Classifier-free guidance against the zeroed embedding (the uncond_ratio dropout).
        let noClip = try Tensor.zeros(clip.shape, dtype: clip.dtype, device: clip.device)
        let sampled = try Sampling.ddim(shape: s, steps: config.validation.num_inference_steps,
                                        scheduler: section.scheduler, generator: g, device: dev,
                                        logger: logger) { x, t in
            try Sampling.guided(scale: config.validation.guidance_scale) {
                try unet(x, timestep: t, encoderHiddenStates: clip)
            } uncond: {
                try unet(x, timestep: t, encoderHiddenStates: noClip)
            }
        }
        let generated = try FrozenNetworks.decode(vae, sampled, scale: latentScale, precision: precision)
        let reconstructed = try FrozenNetworks.decode(vae, latents, scale: latentScale, precision: precision)
        let i = images.shape
        try ImageIO.write(RGBImage(width: 3 * i[3], height: i[0] * i[2], pixels: gridImage([images, reconstructed, generated])),
                          to: directory.appendingPathComponent("grid.png").path)
        return ["loss": try l.item()]
    }
}
