// FrozenNetworks.swift — what the diffusion stages share (train_stage1.py's set-up lines): the
// frozen VAE and CLIP image encoder, the latent scaling factor, weights of a base UNet
// (`base_model_path`, the sd-image-variations UNet both stage-1 UNets start from). Sampling is the
// Inference layer's (Sampling.swift).
import Data
import Foundation
import Inference
import Logging
import Models
import NN
import Torch

enum FrozenNetworks {
    /// The stage's dataset; with data.use_gt_keypoints every clip must hold pose and keypoints.
    static func dataset(_ config: TrainingConfig, logger: Logger) throws -> DatasetReader {
        let ds = try DatasetReader(path: config.data.dataset, logger: logger)
        if config.data.use_gt_keypoints, !ds.clips.allSatisfy({ $0.hasPose && $0.hasKeypoints }) {
            throw TrainingError.invalid("\(config.data.dataset): data.use_gt_keypoints needs pose and keypoints in every clip")
        }
        return ds
    }

    /// The frozen VAE named by `<section>.vae_checkpoint`, in eval mode and the weight dtype.
    static func vae(_ config: TrainingConfig, path: String, section: String, precision: Precision,
                    logger: Logger) throws -> AutoencoderKL {
        let vae = try CheckpointModules.load(folder: path, key: "vae", what: "\(section).vae_checkpoint", logger: logger) { m in
            try AutoencoderKL(ConfigLoader.section(AutoencoderKL.Config.self, m["model"]?["vae"], name: "model.vae",
                                                   file: config.sourcePath))
        }
        try freeze(vae, precision)
        return vae
    }

    /// The frozen motion extractor of a `motion_extractor` checkpoint folder (`<section>.motion_extractor_checkpoint`).
    static func motionExtractor(path: String, section: String, file: String, precision: Precision,
                                logger: Logger) throws -> MotionExtractor {
        let me = try CheckpointModules.load(folder: path, key: "motion_extractor", what: "\(section).motion_extractor_checkpoint",
                                            logger: logger) { m in
            try MotionExtractor(ConfigLoader.section(MotionExtractor.Config.self, m["model"]?["motion_extractor"],
                                                     name: "model.motion_extractor", file: file))
        }
        try freeze(me, precision)
        return me
    }

    /// The frozen CLIP image encoder of `model.image_encoder` and its preprocessing: weights from
    /// `path` (a transformers folder or a weights file), or random when `path` is empty.
    static func imageEncoder(_ config: TrainingConfig, path: String, section: String, precision: Precision,
                             logger: Logger) throws -> (CLIPVisionModelWithProjection, CLIPImageProcessor) {
        let clipConfig = try ConfigLoader.section(CLIPVisionModelWithProjection.Config.self, config.model["image_encoder"],
                                                  name: "model.image_encoder", file: config.sourcePath)
        let encoder = try CLIPVisionModelWithProjection(clipConfig)
        if !path.isEmpty {
            try encoder.load(from: CheckpointModules.weights(path, files: CheckpointModules.clipFiles),
                             ignoreUnexpected: ["vision_model.embeddings.position_ids"])
        } else {
            logger.notice("image encoder: no weights given (\(section).image_encoder_path); using a frozen random CLIP")
        }
        try freeze(encoder, precision)
        var processor = CLIPImageProcessor()
        processor.shortestEdge = clipConfig.image_size
        processor.cropSize = clipConfig.image_size
        return (encoder, processor)
    }

    /// Frozen for good: no gradients, eval mode, the weight dtype on the run's device.
    static func freeze(_ m: Module, _ precision: Precision) throws {
        try m.freeze()
        m.eval()
        try precision.placeFrozen(m)
    }

    /// The latent scaling factor: `configured` when > 0, else 1/std of the VAE's latents (how SD's
    /// 0.18215 was chosen) on two batches of 16 training frames. The probe's seed is fixed, so every
    /// stage that uses the same VAE and dataset estimates the same factor.
    static func latentScale(_ configured: Double, vae: AutoencoderKL, dataset: DatasetReader, config: TrainingConfig,
                            imageSize s: Int, precision: Precision, logger: Logger) throws -> Double {
        guard configured <= 0 else { return configured }
        let std = try Torch.noGrad {
            // The same frames on every data-parallel rank (the stream's start, unsharded), so that
            // all ranks train with one scale.
            var probeConfig = samplerConfig(config, imageSize: s, motionEncoderSize: s, motionExtractorSize: s,
                                            split: "train", batchSize: 16, seed: 0)
            probeConfig.rank = 0
            probeConfig.worldSize = 1
            let probe = try PairFeed(dataset: dataset, config: probeConfig, prefetch: 1, device: precision.device)
            let z = try Tensor.cat((0..<2).map {
                try vae.encode(precision.frozenInput(probe.batch($0).target)).mode().to(.float32)
            }, dim: 0)
            return try z.std().item()
        }
        let scale = 1 / max(std, 1e-6)
        logger.info("latent scale estimated from the data: \(String(format: "%.5f", scale)) (1/std)")
        return scale
    }

    /// Images in [-1, 1] → scaled float32 latents (the posterior's sample, or its mode).
    static func encode(_ vae: AutoencoderKL, _ images: Tensor, scale: Double, sample: Bool, generator: Generator?,
                       shard: BatchShard = .whole, precision: Precision) throws -> Tensor {
        let dist = try vae.encode(precision.frozenInput(images))
        return try (sample ? dist.sample(generator: generator, shard: shard) : dist.mode()).to(.float32) * scale
    }

    /// Scaled latents → images in [-1, 1] (float32).
    static func decode(_ vae: AutoencoderKL, _ latents: Tensor, scale: Double, precision: Precision) throws -> Tensor {
        try vae.decode(precision.frozenInput(latents / scale)).to(.float32).clamp(min: -1, max: 1)
    }

    /// CLIP image embeddings (B, 1, D) of images in [-1, 1].
    static func clipEmbeds(_ encoder: CLIPVisionModelWithProjection, _ processor: CLIPImageProcessor, _ images: Tensor,
                           precision: Precision) throws -> Tensor {
        let pixels = try precision.frozenInput(processor((images + 1) / 2))
        return try encoder(pixels).imageEmbeds.to(.float32).unsqueeze(1)
    }

    // MARK: base UNet

    /// The weights of `base_model_path`: a `personalive train` checkpoint of the `unet` stage
    /// (unet.safetensors), a diffusers pipeline folder (unet/diffusion_pytorch_model.safetensors),
    /// a diffusers UNet folder, or a weights file.
    static func baseUNetWeights(_ path: String) throws -> StateDictSource {
        let fm = FileManager.default
        let folder = URL(fileURLWithPath: path)
        for candidate in ["unet.safetensors", "unet/diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors"] {
            let file = folder.appendingPathComponent(candidate).path
            if fm.fileExists(atPath: file) { return try SafeTensorsSource(path: file) }
        }
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw TrainingError.invalid("\(path): no unet.safetensors, unet/diffusion_pytorch_model.safetensors or "
                                        + "diffusion_pytorch_model.safetensors (expected a `unet` checkpoint or a diffusers folder)")
        }
        return try CheckpointModules.weights(path, files: [])
    }

    /// Keys of a full 2D UNet that PersonaLive's reference UNet does not have.
    static let referenceUNetOmits = ["conv_norm_out.*", "conv_out.*"]
}
