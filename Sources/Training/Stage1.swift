// Stage1.swift — stage 1 of PersonaLive, hybrid motion training (train_stage1.py): the
// reference UNet, the denoising UNet (temporal modules off), the PoseGuider and the motion encoder
// are trained; the VAE, the CLIP image encoder and the motion extractor are frozen. The loss is
// HybridMotionStep's (latent x̂0 MSE + masked MSE) with the reference's dropouts.
import Data
import Foundation
import Logging
import Media
import Models
import NN
import Torch

public struct Stage1Section: Codable, Sendable {
    /// A VAE: a `train` checkpoint folder (config.yaml + vae.safetensors) or a diffusers folder.
    public var vae_checkpoint: String = ""
    /// A motion extractor checkpoint folder (config.yaml + motion_extractor.safetensors); empty
    /// with use_gt_keypoints.
    public var motion_extractor_checkpoint: String = ""
    /// CLIPVisionModelWithProjection weights (a diffusers/transformers folder or safetensors); empty
    /// means a frozen randomly initialised encoder (the tiny default: CLIP cannot be downloaded).
    public var image_encoder_path: String = ""
    public var image_size: Int = 64
    public var motion_encoder_size: Int = 64
    public var motion_extractor_size: Int = 64
    /// Latent scaling factor; ≤ 0 estimates 1/std of the VAE latents from the data (for VAEs that
    /// were not calibrated like SD's, 0.18215).
    public var latent_scale: Double = 0.18215
    public var noise_offset: Double = 0.05
    public var uncond_ratio: Double = 0.1
    public var pose_drop_prob: Double = 0.1
    public var motion_drop_prob: Double = 0.1
    public var bank_drop_ratio: Double = 0.3
    /// Reference-UNet parameters matching these globs stay frozen (its last up block is unused).
    public var reference_frozen: [String] = ["up_blocks.3.*"]
    public var loss_mse_weight: Double = 1
    public var loss_local_weight: Double = 1
    /// Scheduler (diffusers DDIMScheduler config keys) for training noise and validation sampling.
    public var scheduler: DDIMScheduler.Config = Stage1Section.defaultScheduler

    public static var defaultScheduler: DDIMScheduler.Config {
        var c = DDIMScheduler.Config()
        c.beta_start = 0.00085
        c.beta_end = 0.02
        c.beta_schedule = "scaled_linear"
        c.clip_sample = false
        c.steps_offset = 1
        c.prediction_type = "epsilon"
        c.timestep_spacing = "trailing"
        return c
    }

    enum K: String, CodingKey, CaseIterable {
        case vae_checkpoint, motion_extractor_checkpoint, image_encoder_path, image_size, motion_encoder_size,
             motion_extractor_size, latent_scale, noise_offset, uncond_ratio, pose_drop_prob, motion_drop_prob,
             bank_drop_ratio, reference_frozen, loss_mse_weight, loss_local_weight, scheduler
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        let d = Stage1Section()
        vae_checkpoint = try c.value(.vae_checkpoint, default: d.vae_checkpoint)
        motion_extractor_checkpoint = try c.value(.motion_extractor_checkpoint, default: d.motion_extractor_checkpoint)
        image_encoder_path = try c.value(.image_encoder_path, default: d.image_encoder_path)
        image_size = try c.value(.image_size, default: d.image_size)
        motion_encoder_size = try c.value(.motion_encoder_size, default: d.motion_encoder_size)
        motion_extractor_size = try c.value(.motion_extractor_size, default: d.motion_extractor_size)
        latent_scale = try c.value(.latent_scale, default: d.latent_scale)
        noise_offset = try c.value(.noise_offset, default: d.noise_offset)
        uncond_ratio = try c.value(.uncond_ratio, default: d.uncond_ratio)
        pose_drop_prob = try c.value(.pose_drop_prob, default: d.pose_drop_prob)
        motion_drop_prob = try c.value(.motion_drop_prob, default: d.motion_drop_prob)
        bank_drop_ratio = try c.value(.bank_drop_ratio, default: d.bank_drop_ratio)
        reference_frozen = try c.value(.reference_frozen, default: d.reference_frozen)
        loss_mse_weight = try c.value(.loss_mse_weight, default: d.loss_mse_weight)
        loss_local_weight = try c.value(.loss_local_weight, default: d.loss_local_weight)
        scheduler = try c.value(.scheduler, default: d.scheduler)
    }
}

/// The networks of stage 1, built from the config's `model` section.
public struct Stage1Model {
    public let denoiser: UNet3DConditionModel
    public let reference: UNet2DConditionModel
    public let poseGuider: PoseGuider
    public let motionEncoder: MotionEncoder
    public let imageEncoder: CLIPVisionModelWithProjection
    public let vae: AutoencoderKL
    public let motionExtractor: MotionExtractor?
}

public final class Stage1: TrainingStage {
    public let model: Stage1Model
    public let section: Stage1Section
    let config: TrainingConfig
    let step: HybridMotionStep
    let control: ReferenceAttentionControl
    let scheduler: DDIMScheduler
    let feed: PairFeed
    let valFeed: PairFeed
    let clipProcessor: CLIPImageProcessor
    let useGT: Bool
    /// Latents are multiplied by this (SD's 0.18215; estimated from the data when configured ≤ 0).
    var latentScale: Double
    public var batchSize: Int { config.data.train_bs }
    public var dataWaitSeconds: Double { feed.waitSeconds }
    public let precision: Precision

    public init(config: TrainingConfig, logger: Logger) throws {
        self.config = config
        precision = try Precision(solver: config.solver, logger: logger)
        let file = config.sourcePath
        section = try ConfigLoader.section(Stage1Section.self, config.stageSection, name: "stage1", file: file)
        useGT = config.data.use_gt_keypoints
        func part<T: Decodable>(_ t: T.Type, _ key: String) throws -> T {
            try ConfigLoader.section(T.self, config.model[key], name: "model.\(key)", file: file)
        }
        let denoiser = try UNet3DConditionModel(part(UNet3DConditionModel.Config.self, "denoising_unet"))
        let reference = try UNet2DConditionModel(part(UNet2DConditionModel.Config.self, "reference_unet"),
                                                 withOutputLayers: false)
        let poseGuider = try PoseGuider(part(PoseGuider.Config.self, "pose_guider"))
        let motionEncoder = try MotionEncoder(part(MotionEncoder.Config.self, "motion_encoder"))
        let clipConfig = try part(CLIPVisionModelWithProjection.Config.self, "image_encoder")
        let imageEncoder = try CLIPVisionModelWithProjection(clipConfig)
        if !section.image_encoder_path.isEmpty {
            try Self.loadWeights(imageEncoder, path: section.image_encoder_path, file: "model.safetensors")
        } else {
            logger.notice("image encoder: no weights given (stage1.image_encoder_path); using a frozen random CLIP")
        }
        let vae = try Self.loadCheckpointModule(section.vae_checkpoint, key: "vae", logger: logger) { c in
            try AutoencoderKL(ConfigLoader.section(AutoencoderKL.Config.self, c.model["vae"], name: "model.vae", file: file))
        }
        var extractor: MotionExtractor?
        if !useGT || !section.motion_extractor_checkpoint.isEmpty {
            extractor = try Self.loadCheckpointModule(section.motion_extractor_checkpoint, key: "motion_extractor",
                                                      logger: logger) { c in
                try MotionExtractor(ConfigLoader.section(MotionExtractor.Config.self, c.model["motion_extractor"],
                                                         name: "model.motion_extractor", file: file))
            }
        }
        model = Stage1Model(denoiser: denoiser, reference: reference, poseGuider: poseGuider,
                            motionEncoder: motionEncoder, imageEncoder: imageEncoder, vae: vae, motionExtractor: extractor)
        // Frozen networks: no gradients, eval mode for good, in the weight dtype.
        for m in [vae, imageEncoder] as [Module] + (extractor.map { [$0] } ?? []) {
            try m.freeze()
            m.eval()
            try precision.placeFrozen(m)
        }
        try reference.freeze(section.reference_frozen)
        for m in [denoiser, reference, poseGuider, motionEncoder] as [Module] { try precision.placeTrained(m) }

        control = try ReferenceAttentionControl(writer: reference, reader: denoiser, fusionBlocks: "full",
                                                roundBankToFP16: true)
        scheduler = try DDIMScheduler(section.scheduler)
        var s = HybridMotionStep(denoiser: denoiser, reference: reference, control: control, scheduler: scheduler)
        s.noiseOffset = section.noise_offset
        s.bankDropRatio = section.bank_drop_ratio
        s.lossWeights = (section.loss_mse_weight, section.loss_local_weight)
        step = s
        var processor = CLIPImageProcessor()
        processor.shortestEdge = clipConfig.image_size
        processor.cropSize = clipConfig.image_size
        clipProcessor = processor

        let ds = try DatasetReader(path: config.data.dataset, logger: logger)
        if useGT, !ds.clips.allSatisfy({ $0.hasPose && $0.hasKeypoints }) {
            throw TrainingError.invalid("\(config.data.dataset): data.use_gt_keypoints needs pose and keypoints in every clip")
        }
        (feed, valFeed) = try stageFeeds(config, dataset: ds, imageSize: section.image_size,
                                          motionEncoderSize: section.motion_encoder_size,
                                          motionExtractorSize: section.motion_extractor_size, device: precision.device)
        latentScale = section.latent_scale
        if latentScale <= 0 {
            // As SD's 0.18215 was chosen: 1 / std of the VAE's latents, here on a few training batches.
            let stats = try Torch.noGrad {
                let s = section.image_size
                let probe = try PairFeed(dataset: ds, config: samplerConfig(config, imageSize: s, motionEncoderSize: s,
                                                                            motionExtractorSize: s, split: "train",
                                                                            batchSize: 16, seed: config.seed &+ 1),
                                         prefetch: 1, device: precision.device)
                let z = try Tensor.cat((0..<2).map {
                    try vae.encode(precision.frozenInput(probe.batch($0).target)).mode().to(.float32)
                }, dim: 0)
                return try z.std().item()
            }
            latentScale = 1 / max(stats, 1e-6)
            logger.info("latent scale estimated from the data: \(String(format: "%.5f", latentScale)) (1/std)")
        }
    }

    /// Builds a frozen module from a `train` checkpoint folder (its config.yaml says how) or
    /// loads a diffusers-style folder / weights file.
    static func loadCheckpointModule<M: Module>(_ path: String, key: String, logger: Logger,
                                                build: (TrainingConfig) throws -> M) throws -> M {
        guard !path.isEmpty else { throw TrainingError.invalid("stage1.\(key)_checkpoint is required") }
        let folder = URL(fileURLWithPath: path)
        let cfgPath = folder.appendingPathComponent("config.yaml").path
        guard FileManager.default.fileExists(atPath: cfgPath) else {
            throw TrainingError.invalid("\(path): no config.yaml (expected a checkpoint folder written by `personalive train`)")
        }
        let m = try build(TrainingConfig.load(path: cfgPath))
        try m.load(from: SafeTensorsSource(path: folder.appendingPathComponent("\(key).safetensors").path))
        logger.info("loaded \(key) from \(path)")
        return m
    }

    static func loadWeights(_ m: Module, path: String, file: String) throws {
        var isDir: ObjCBool = false
        FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        let source: StateDictSource
        if isDir.boolValue {
            source = try SafeTensorsSource(path: URL(fileURLWithPath: path).appendingPathComponent(file).path)
        } else if path.hasSuffix(".safetensors") || path.hasSuffix(".index.json") {
            source = try SafeTensorsSource(path: path)
        } else {
            source = TensorDictSource(try Pth.load(path: path), name: path)
        }
        try m.load(from: source, ignoreUnexpected: ["vision_model.embeddings.position_ids"])
    }

    public var savedModules: [(String, Module)] {
        [("denoising_unet", model.denoiser), ("reference_unet", model.reference), ("pose_guider", model.poseGuider),
         ("motion_encoder", model.motionEncoder)]
    }

    public var trainableParameters: [(String, Tensor)] {
        savedModules.flatMap { name, m in m.namedParameters().filter { $0.1.requiresGrad }.map { ("\(name).\($0.0)", $0.1) } }
    }

    // MARK: front-ends

    struct Conditions {
        let referenceLatent: Tensor, targetLatent: Tensor, clip: Tensor, canvas: Tensor
    }

    /// The frozen front-ends (no gradients, weight dtype in, float32 out): latents, CLIP
    /// embedding, rendered keypoints.
    func conditions(_ b: PairTensors, sampleLatents: Bool, generator: Generator?) throws -> Conditions {
        try Torch.noGrad {
            func latent(_ x: Tensor) throws -> Tensor {
                let dist = try model.vae.encode(precision.frozenInput(x))
                return try (sampleLatents ? dist.sample(generator: generator) : dist.mode()).to(.float32) * latentScale
            }
            let ref = try latent(b.reference)
            let tgt = try latent(b.target).unsqueeze(2)
            let pixels = try precision.frozenInput(clipProcessor((b.reference + 1) / 2))
            let clip = try model.imageEncoder(pixels).imageEmbeds.to(.float32).unsqueeze(1)
            let kp = try keypoints(b)
            let s = section.image_size
            let canvas = try Keypoints.draw(kp, height: s, width: s)
            return Conditions(referenceLatent: ref, targetLatent: tgt, clip: clip, canvas: canvas)
        }
    }

    /// Driving keypoints: the motion extractor's, or the dataset's ground truth.
    func keypoints(_ b: PairTensors) throws -> Tensor {
        if useGT, let pose = b.targetPose, let kc = b.targetKeypoints {
            let rot = try Keypoints.rotationMatrix(pitch: pose.select(1, 0), yaw: pose.select(1, 1), roll: pose.select(1, 2))
            let rotated = try kc.matmul(rot) * pose.narrow(1, start: 6, length: 1).unsqueeze(2)
            let xy = try rotated.narrow(2, start: 0, length: 2) + pose.narrow(1, start: 3, length: 2).unsqueeze(1)
            return try Tensor.cat([xy, rotated.narrow(2, start: 2, length: 1)], dim: 2)
        }
        guard let me = model.motionExtractor else { throw TrainingError.invalid("no motion extractor and no ground truth") }
        return try me(precision.frozenInput(b.motionInput)).to(.float32)
    }

    // MARK: training

    public func losses(sample: Int, generator: Generator) throws -> [String: Tensor] {
        let b = try feed.batch(sample / batchSize)
        let cond = try conditions(b, sampleLatents: true, generator: generator)
        let poseFeatures = try model.poseGuider(cond.canvas.unsqueeze(2))
        let motion = try model.motionEncoder(b.faceCrop)
        let shape = cond.targetLatent.shape
        let n = shape[0]
        let u = try Tensor.rand([3], generator: generator).toArray(Float.self)
        // Drawn from the run's CPU generator whatever the device, so runs agree across devices.
        let dev = precision.device
        let draws = HybridMotionDraws(
            noise: try Tensor.randn(shape, generator: generator, device: dev),
            noiseOffset: section.noise_offset > 0
                ? try Tensor.randn([n, shape[1], 1, 1, 1], generator: generator, device: dev) : nil,
            timesteps: try Tensor.randint(0, scheduler.config.num_train_timesteps, [n], generator: generator, device: dev),
            bankDraws: nil, uncond: Double(u[0]) < section.uncond_ratio,
            dropPose: Double(u[1]) < section.pose_drop_prob, dropMotion: Double(u[2]) < section.motion_drop_prob)
        let inputs = HybridMotionInputs(referenceLatent: cond.referenceLatent, targetLatent: cond.targetLatent,
                                        clip: cond.clip, poseFeatures: poseFeatures, motion: motion,
                                        faceMask: b.faceMask, localMask: b.localMask)
        let out = try step(inputs, draws: draws, generator: generator)
        return ["loss": out.loss, "loss_mse": out.lossMSE, "loss_local": out.lossLocal]
    }

    // MARK: validation

    /// 20-step DDIM sampling of the val pairs (reference | driving | keypoint render | generated),
    /// plus the latent losses with fixed draws (`masked_mse` is the face-weighted term).
    public func validate(step stepIndex: Int, directory: URL, logger: Logger) throws -> [String: Double] {
        let b = try valFeed.batch(0)
        let g = try Generator(seed: config.validation.seed)
        let cond = try conditions(b, sampleLatents: false, generator: nil)
        let poseFeatures = try model.poseGuider(cond.canvas.unsqueeze(2))
        let motion = try model.motionEncoder(b.faceCrop)
        let n = cond.targetLatent.shape[0]

        // Fixed-draw losses: comparable from one validation to the next.
        let draws = HybridMotionDraws(
            noise: try Tensor.randn(cond.targetLatent.shape, generator: g, device: precision.device), noiseOffset: nil,
            timesteps: try Tensor.randint(0, scheduler.config.num_train_timesteps, [n], generator: g,
                                          device: precision.device), bankDraws: nil,
            uncond: false, dropPose: false, dropMotion: false)
        var fixed = step
        fixed.noiseOffset = 0
        fixed.bankDropRatio = 0
        let l = try fixed(HybridMotionInputs(referenceLatent: cond.referenceLatent, targetLatent: cond.targetLatent,
                                             clip: cond.clip, poseFeatures: poseFeatures, motion: motion,
                                             faceMask: b.faceMask, localMask: b.localMask), draws: draws)

        // One-step x̂0 of the noised driving latent at t = 500: what the loss trains, as an image.
        let t500 = try Tensor.full([n], 500, dtype: .int64)
        let noisy = try scheduler.addNoise(cond.targetLatent, noise: draws.noise, timesteps: t500)
        control.clear()
        _ = try model.reference(cond.referenceLatent, timestep: Tensor.zeros([n], dtype: .int64), encoderHiddenStates: cond.clip)
        try control.update(dropRatio: 0, generator: nil)
        let eps500 = try model.denoiser(noisy, timesteps: t500, clip: cond.clip, motion: motion, poseCond: poseFeatures)
        let x0 = try step.x0(fromEps: eps500, noisy: noisy, timesteps: t500)
        let onestep = try decode(x0.squeeze(2))

        // Cross reenactment: every val reference driven by every val driving frame (n² samples;
        // the diagonal pairs each reference with its own driving frame).
        let ri = try Tensor((0..<n).flatMap { i in [Int64](repeating: Int64(i), count: n) }).to(precision.device)
        let di = try Tensor((0..<n).flatMap { _ in (0..<n).map(Int64.init) }).to(precision.device)
        let shape = cond.targetLatent.shape
        let all = try sample(referenceLatent: cond.referenceLatent.indexSelect(0, ri), clip: cond.clip.indexSelect(0, ri),
                             motion: motion.indexSelect(0, di), pose: poseFeatures.indexSelect(0, di),
                             shape: [n * n] + shape.dropFirst(), generator: g, logger: logger)
        let diagonal = try Tensor((0..<n).map { Int64($0 * n + $0) }).to(precision.device)
        let generated = try all.indexSelect(0, diagonal)

        // Pixel MSE inside the face box between the generated image and the driving frame.
        let diff = try (generated - b.target).square() * b.faceMask
        let faceMSE = try diff.sum().item() / max(1, try b.faceMask.sum().item() * 3)
        let s = b.target.shape
        let grid = try gridImage([b.reference, b.target, cond.canvas * 2 - 1, generated])
        try ImageIO.write(RGBImage(width: 4 * s[3], height: s[0] * s[2], pixels: grid),
                          to: directory.appendingPathComponent("grid.png").path)
        try ImageIO.write(RGBImage(width: 2 * s[3], height: s[0] * s[2], pixels: gridImage([b.target, onestep])),
                          to: directory.appendingPathComponent("x0_t500.png").path)
        // reenact.png: top row the driving frames, left column the references, cell (i, j) =
        // reference i in the pose and expression of driving frame j.
        let blank = try Tensor.full([1] + s.dropFirst(), -1, device: precision.device)
        var columns = [try Tensor.cat([blank, b.reference], dim: 0)]
        for j in 0..<n {
            let cells = try Tensor((0..<n).map { Int64($0 * n + j) }).to(precision.device)
            columns.append(try Tensor.cat([b.target.narrow(0, start: j, length: 1), all.indexSelect(0, cells)], dim: 0))
        }
        try ImageIO.write(RGBImage(width: (n + 1) * s[3], height: (n + 1) * s[2], pixels: gridImage(columns)),
                          to: directory.appendingPathComponent("reenact.png").path)

        var metrics = ["loss": try l.loss.item(), "latent_mse": try l.lossMSE.item(), "masked_mse": try l.lossLocal.item(),
                       "face_mse_pixels": faceMSE]
        // Does the generated head take the driving pose? Head angles read by the frozen motion
        // extractor from every generated cell vs its driving frame, next to the error of simply
        // copying the reference (what a model that ignores the driving signals would score).
        if model.motionExtractor != nil {
            // Angles of the n driving and n reference frames, spread over the n² cells.
            let driving = try headAngles(b.target).indexSelect(0, di)
            let reference = try headAngles(b.reference).indexSelect(0, ri)
            metrics["pose_error_deg"] = try (headAngles(all) - driving).abs().mean().item()
            metrics["pose_error_copy_reference_deg"] = try (reference - driving).abs().mean().item()
        }
        return metrics
    }

    /// DDIM sampling from pure noise with the reference bank written once; one pose/motion
    /// condition per sample. Returns images in [-1, 1].
    func sample(referenceLatent: Tensor, clip: Tensor, motion: Tensor, pose: Tensor, shape: [Int],
                generator g: Generator, logger: Logger) throws -> Tensor {
        let n = shape[0]
        let sampler = try DDIMScheduler(section.scheduler)
        try sampler.setTimesteps(config.validation.num_inference_steps)
        control.clear()
        defer { control.clear() }
        _ = try model.reference(referenceLatent, timestep: Tensor.zeros([n], dtype: .int64), encoderHiddenStates: clip)
        try control.update(dropRatio: 0, generator: nil)
        var latents = try Tensor.randn(shape, generator: g, device: precision.device)
        for t in sampler.timesteps {
            let ts = try Tensor.full([n], Double(t), dtype: .int64)
            let eps = try model.denoiser(latents, timesteps: ts, clip: clip, motion: motion, poseCond: pose)
            let out = try sampler.step(modelOutput: eps, timestep: Tensor([Int64(t)]), sample: latents)
            latents = out.prevSample
            if logger.logLevel <= .debug {
                let (x0s, es, ss) = (try out.predOriginalSample.std().item(), try eps.std().item(), try latents.std().item())
                logger.debug("sampling t=\(t): x0 std \(x0s), eps std \(es), sample std \(ss)")
            }
        }
        return try decode(latents.squeeze(2))
    }

    /// Pitch, yaw and roll in degrees, (N, 3), that the frozen motion extractor reads from images
    /// in [-1, 1] (resized to its input size).
    func headAngles(_ images: Tensor) throws -> Tensor {
        guard let me = model.motionExtractor else { throw TrainingError.invalid("no motion extractor") }
        let size = section.motion_extractor_size
        var x = try (images + 1) / 2
        if x.shape[2] != size || x.shape[3] != size {
            x = try F.interpolate(x, size: (size, size), mode: .bilinear)
        }
        let out = try me.detector(precision.frozenInput(x))
        let bins = me.config.num_bins
        return try Tensor.stack([out.pitch, out.yaw, out.roll].map {
            try Keypoints.degrees($0.to(.float32), numBins: bins, idx: me.idx_tensor.to(.float32))
        }, dim: 1)
    }

    /// Scaled latents → images in [-1, 1] (float32) through the frozen VAE.
    func decode(_ latents: Tensor) throws -> Tensor {
        try model.vae.decode(precision.frozenInput(latents / latentScale)).to(.float32).clamp(min: -1, max: 1)
    }
}
