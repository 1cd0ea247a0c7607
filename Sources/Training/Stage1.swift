// Stage1.swift — stage 1 of PersonaLive, hybrid motion training (train_stage1.py): the
// reference UNet, the denoising UNet (temporal modules off), the PoseGuider and the motion encoder
// are trained; the VAE, the CLIP image encoder and the motion extractor are frozen. The loss is
// HybridMotionStep's (latent x̂0 MSE + masked MSE) with the reference's dropouts.
import Data
import Foundation
import Inference
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
    /// The 2D UNet both UNets start from (the reference's base_model_path, sd-image-variations):
    /// a `unet` stage checkpoint, a diffusers pipeline or UNet folder, or a weights file. The
    /// reference UNet loads it (less conv_norm_out/conv_out), the denoising UNet as
    /// from_pretrained_2d does. Empty: both start from random weights.
    public var base_model_path: String = ""
    public var image_size: Int = 64
    public var motion_encoder_size: Int = 64
    public var motion_extractor_size: Int = 64
    /// Radius of the rendered keypoint discs in pixels; 0 keeps the reference's proportion (radius 4
    /// on its 512² canvas, so 1 at 64²: radius 4 would merge a tiny face's discs into one blob).
    public var keypoint_radius: Int = 0
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
    /// diffusers' snr_gamma (Min-SNR-γ loss weighting, 5 is its usual value); 0 = the reference's
    /// loss, which weighs high-t samples by 1/ᾱ − 1 (4347 at t = 999, 4.9 at t = 500).
    public var snr_gamma: Double = 0
    /// What the unconditional branch of validation.guidance_scale drops, among the conditions the
    /// training step drops: `reference` (no bank, uncond_ratio), `pose` (pose_drop_prob), `motion`
    /// (motion_drop_prob).
    public var guidance_uncond: [String] = ["reference"]
    static let guidanceConditions = ["reference", "pose", "motion"]
    /// Scheduler (diffusers DDIMScheduler config keys) for training noise and validation sampling.
    public var scheduler: DDIMScheduler.Config = Stage1Section.defaultScheduler

    /// The reference's DDIM settings (REFERENCE.md §0).
    public static var defaultScheduler: DDIMScheduler.Config { .personaLive }

    enum K: String, CodingKey, CaseIterable {
        case vae_checkpoint, motion_extractor_checkpoint, image_encoder_path, base_model_path, image_size, motion_encoder_size,
             motion_extractor_size, keypoint_radius, latent_scale, noise_offset, uncond_ratio, pose_drop_prob, motion_drop_prob,
             bank_drop_ratio, reference_frozen, loss_mse_weight, loss_local_weight, snr_gamma, guidance_uncond, scheduler
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        let d = Stage1Section()
        vae_checkpoint = try c.value(.vae_checkpoint, default: d.vae_checkpoint)
        motion_extractor_checkpoint = try c.value(.motion_extractor_checkpoint, default: d.motion_extractor_checkpoint)
        image_encoder_path = try c.value(.image_encoder_path, default: d.image_encoder_path)
        base_model_path = try c.value(.base_model_path, default: d.base_model_path)
        image_size = try c.value(.image_size, default: d.image_size)
        motion_encoder_size = try c.value(.motion_encoder_size, default: d.motion_encoder_size)
        motion_extractor_size = try c.value(.motion_extractor_size, default: d.motion_extractor_size)
        keypoint_radius = try c.value(.keypoint_radius, default: d.keypoint_radius)
        guard keypoint_radius >= 0 else {
            throw DecodingError.dataCorruptedError(forKey: .keypoint_radius, in: c,
                                                   debugDescription: "expected a radius >= 0 (0 = scaled to image_size), got \(keypoint_radius)")
        }
        latent_scale = try c.value(.latent_scale, default: d.latent_scale)
        noise_offset = try c.value(.noise_offset, default: d.noise_offset)
        uncond_ratio = try c.value(.uncond_ratio, default: d.uncond_ratio)
        pose_drop_prob = try c.value(.pose_drop_prob, default: d.pose_drop_prob)
        motion_drop_prob = try c.value(.motion_drop_prob, default: d.motion_drop_prob)
        bank_drop_ratio = try c.value(.bank_drop_ratio, default: d.bank_drop_ratio)
        reference_frozen = try c.value(.reference_frozen, default: d.reference_frozen)
        loss_mse_weight = try c.value(.loss_mse_weight, default: d.loss_mse_weight)
        loss_local_weight = try c.value(.loss_local_weight, default: d.loss_local_weight)
        snr_gamma = try c.value(.snr_gamma, default: d.snr_gamma)
        guard snr_gamma >= 0 else {
            throw DecodingError.dataCorruptedError(forKey: .snr_gamma, in: c,
                                                   debugDescription: "expected a gamma >= 0 (0 = the reference's loss), got \(snr_gamma)")
        }
        guidance_uncond = try c.value(.guidance_uncond, default: d.guidance_uncond)
        let unknown = guidance_uncond.filter { !Self.guidanceConditions.contains($0) }
        guard unknown.isEmpty, !guidance_uncond.isEmpty else {
            throw DecodingError.dataCorruptedError(
                forKey: .guidance_uncond, in: c,
                debugDescription: "expected a non-empty list of \(Self.guidanceConditions.joined(separator: ", ")), got \(guidance_uncond)")
        }
        scheduler = try c.value(.scheduler, default: d.scheduler)
    }

    /// The disc radius the keypoint renderer uses at image_size.
    public var renderRadius: Int { keypoint_radius > 0 ? keypoint_radius : Keypoints.renderRadius(canvasSize: image_size) }
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

public final class Stage1: PairFedStage, TrainingStage {
    public let model: Stage1Model
    public let section: Stage1Section
    let step: HybridMotionStep
    let control: ReferenceAttentionControl
    let scheduler: DDIMScheduler
    /// Val clips' frames for the animated validation (validation.num_frames), and each clip's fps.
    let drive: (sampler: SequenceSampler, fps: [String: Double])?
    let clipProcessor: CLIPImageProcessor
    let useGT: Bool
    /// Latents are multiplied by this (SD's 0.18215; estimated from the data when configured ≤ 0).
    var latentScale: Double
    /// The frozen networks' features of every frame (data.cache_latents), else nil.
    let cache: LazyFeatureCache?
    private var sharedModel: PersonaLiveModel?

    public init(config: TrainingConfig, logger: Logger) throws {
        let precision = try Precision(solver: config.solver, logger: logger)
        let file = config.sourcePath
        let section = try ConfigLoader.section(Stage1Section.self, config.stageSection, name: "stage1", file: file)
        let useGT = config.data.use_gt_keypoints
        (self.section, self.useGT) = (section, useGT)
        func part<T: Decodable>(_ t: T.Type, _ key: String) throws -> T {
            try ConfigLoader.section(T.self, config.model[key], name: "model.\(key)", file: file)
        }
        let denoiser = try UNet3DConditionModel(part(UNet3DConditionModel.Config.self, "denoising_unet"))
        let reference = try UNet2DConditionModel(part(UNet2DConditionModel.Config.self, "reference_unet"),
                                                 withOutputLayers: false)
        let poseGuider = try PoseGuider(part(PoseGuider.Config.self, "pose_guider"))
        let motionEncoder = try MotionEncoder(part(MotionEncoder.Config.self, "motion_encoder"))
        if !section.base_model_path.isEmpty {
            let base = try FrozenNetworks.baseUNetWeights(section.base_model_path)
            try reference.load(from: base, ignoreUnexpected: FrozenNetworks.referenceUNetOmits)
            try denoiser.loadPretrained2D(unet2DStateDict: base)
            logger.info("reference and denoising UNets initialised from \(section.base_model_path)")
        }
        let (imageEncoder, processor) = try FrozenNetworks.imageEncoder(config, path: section.image_encoder_path,
                                                                         section: "stage1", precision: precision, logger: logger)
        let vae = try FrozenNetworks.vae(config, path: section.vae_checkpoint, section: "stage1", precision: precision,
                                         logger: logger)
        var extractor: MotionExtractor?
        if !useGT || !section.motion_extractor_checkpoint.isEmpty {
            extractor = try FrozenNetworks.motionExtractor(path: section.motion_extractor_checkpoint, section: "stage1", file: file,
                                                   precision: precision, logger: logger)
        }
        model = Stage1Model(denoiser: denoiser, reference: reference, poseGuider: poseGuider,
                            motionEncoder: motionEncoder, imageEncoder: imageEncoder, vae: vae, motionExtractor: extractor)
        try reference.freeze(section.reference_frozen)
        for m in [denoiser, reference, poseGuider, motionEncoder] as [Module] { try precision.placeTrained(m) }

        let control = try ReferenceAttentionControl(writer: reference, reader: denoiser, fusionBlocks: "full",
                                                    roundBankToFP16: true)
        let scheduler = try DDIMScheduler(section.scheduler)
        (self.control, self.scheduler) = (control, scheduler)
        var s = HybridMotionStep(denoiser: denoiser, reference: reference, control: control, scheduler: scheduler)
        s.noiseOffset = section.noise_offset
        s.bankDropRatio = section.bank_drop_ratio
        s.lossWeights = (section.loss_mse_weight, section.loss_local_weight)
        s.snrGamma = section.snr_gamma
        step = s
        clipProcessor = processor

        let ds = try FrozenNetworks.dataset(config, logger: logger)
        latentScale = try FrozenNetworks.latentScale(section.latent_scale, vae: vae, dataset: ds, config: config,
                                                     imageSize: section.image_size, precision: precision, logger: logger)
        drive = try Self.driveSampler(config, dataset: ds, section: section)
        let feeds = try stageFeeds(config, dataset: ds, imageSize: section.image_size,
                                   motionEncoderSize: section.motion_encoder_size,
                                   motionExtractorSize: section.motion_extractor_size, device: precision.device)
        cache = config.data.cache_latents
            ? try LazyFeatureCache(sampler: feeds.train.sampler,
                                   encoders: .init(vae: vae, imageEncoder: imageEncoder, processor: processor,
                                                   motionExtractor: useGT ? nil : extractor, precision: precision),
                                   device: precision.device, logger: logger)
            : nil
        super.init(config: config, precision: precision, feeds: feeds)
    }

    /// `validation.num_frames` frames spread over a whole val clip (the sampler's stride shrinks to
    /// fit the clip), with that clip's reference frame; nil when turned off or without val clips.
    static func driveSampler(_ config: TrainingConfig, dataset: DatasetReader,
                             section: Stage1Section) throws -> (sampler: SequenceSampler, fps: [String: Double])? {
        let n = config.validation.num_frames
        let val = Set(try dataset.split("val"))
        let clips = dataset.clips.filter { val.contains($0.id) }
        guard n > 0, let longest = clips.map(\.frameCount).max() else { return nil }
        var c = samplerConfig(config, imageSize: section.image_size, motionEncoderSize: section.motion_encoder_size,
                              motionExtractorSize: section.motion_extractor_size, split: "val", batchSize: 1,
                              seed: config.validation.seed)
        c.nSampleFrames = n
        c.sampleRate = max(1, (longest - 1) / max(1, n - 1))
        return (try SequenceSampler(dataset: dataset, config: c),
                Dictionary(clips.map { ($0.id, $0.fps) }, uniquingKeysWith: { a, _ in a }))
    }

    /// The trained modules, and the frozen random CLIP image encoder when no weights were given
    /// (its random weights are part of the model: inference needs exactly them).
    public var savedModules: [(String, Module)] {
        [("denoising_unet", model.denoiser), ("reference_unet", model.reference), ("pose_guider", model.poseGuider),
         ("motion_encoder", model.motionEncoder)]
            + (section.image_encoder_path.isEmpty ? [("image_encoder", model.imageEncoder)] : [])
    }

    /// The latent scale the checkpoints were trained with (estimated from the data when configured ≤ 0).
    public var pipelineMetadata: [String: Double] { ["latent_scale": latentScale] }

    public var trainableParameters: [(String, Tensor)] {
        savedModules.flatMap { name, m in m.namedParameters().filter { $0.1.requiresGrad }.map { ("\(name).\($0.0)", $0.1) } }
    }

    // MARK: front-ends

    struct Conditions {
        let referenceLatent: Tensor, targetLatent: Tensor, clip: Tensor, canvas: Tensor
    }

    /// The frozen front-ends (no gradients, weight dtype in, float32 out): latents, CLIP
    /// embedding, rendered keypoints.
    func conditions(_ b: PairTensors, sampleLatents: Bool, generator: Generator?,
                    shard: BatchShard = .whole) throws -> Conditions {
        try Torch.noGrad {
            func latent(_ x: Tensor) throws -> Tensor {
                try FrozenNetworks.encode(model.vae, x, scale: latentScale, sample: sampleLatents, generator: generator,
                                          shard: shard, precision: precision)
            }
            if let cache = try cache?.get() {
                let (ids, refs, tgts) = (b.clipIDs, b.referenceIndices, b.targetIndices)
                let ref = try cache.latents(ids, refs, scale: latentScale, sample: sampleLatents, generator: generator, shard: shard)
                let tgt = try cache.latents(ids, tgts, scale: latentScale, sample: sampleLatents, generator: generator, shard: shard)
                let kp = try useGT ? keypoints(b) : cache.keypoints(ids, tgts)!
                return Conditions(referenceLatent: ref, targetLatent: try tgt.unsqueeze(2), clip: try cache.clipEmbeds(ids, refs)!,
                                  canvas: try canvas(kp))
            }
            let ref = try latent(b.reference)
            let tgt = try latent(b.target).unsqueeze(2)
            let clip = try FrozenNetworks.clipEmbeds(model.imageEncoder, clipProcessor, b.reference, precision: precision)
            return Conditions(referenceLatent: ref, targetLatent: tgt, clip: clip, canvas: try canvas(keypoints(b)))
        }
    }

    /// Keypoints drawn as discs on an image_size canvas.
    func canvas(_ kp: Tensor) throws -> Tensor {
        try Keypoints.draw(kp, height: section.image_size, width: section.image_size, radius: section.renderRadius)
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

    /// Every rank of a data-parallel run draws from the same generator state at the global batch
    /// and keeps its rows (BatchShard), so W ranks at batch b train as one process at batch W·b.
    public var drawsShardedAcrossRanks: Bool { true }

    public func losses(sample: Int, generator: Generator) throws -> [String: Tensor] {
        let b = try feed.batch(sample / batchSize)
        let shard = BatchShard(rank: config.rank, count: config.worldSize)
        let cond = try conditions(b, sampleLatents: true, generator: generator, shard: shard)
        let poseFeatures = try model.poseGuider(cond.canvas.unsqueeze(2))
        let motion = try model.motionEncoder(b.faceCrop)
        let shape = cond.targetLatent.shape
        let n = shape[0]
        // One draw per (global) batch: every rank makes the same dropout decisions.
        let u = try Tensor.rand([3], generator: generator).toArray(Float.self)
        // Drawn from the run's CPU generator whatever the device, so runs agree across devices.
        let dev = precision.device
        let draws = HybridMotionDraws(
            noise: try shard.randn(shape, generator: generator, device: dev),
            noiseOffset: section.noise_offset > 0
                ? try shard.randn([n, shape[1], 1, 1, 1], generator: generator, device: dev) : nil,
            timesteps: try shard.randint(0, scheduler.config.num_train_timesteps, [n], generator: generator, device: dev),
            bankDraws: nil, uncond: Double(u[0]) < section.uncond_ratio,
            dropPose: Double(u[1]) < section.pose_drop_prob, dropMotion: Double(u[2]) < section.motion_drop_prob)
        let inputs = HybridMotionInputs(referenceLatent: cond.referenceLatent, targetLatent: cond.targetLatent,
                                        clip: cond.clip, poseFeatures: poseFeatures, motion: motion,
                                        faceMask: b.faceMask, localMask: b.localMask)
        let out = try step(inputs, draws: draws, generator: generator, shard: shard)
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

        // Fixed-draw losses: comparable from one validation to the next, and the DESIGN §1 terms
        // (unweighted) whatever stage1.snr_gamma training uses, so that runs compare.
        let draws = HybridMotionDraws(
            noise: try Tensor.randn(cond.targetLatent.shape, generator: g, device: precision.device), noiseOffset: nil,
            timesteps: try Tensor.randint(0, scheduler.config.num_train_timesteps, [n], generator: g,
                                          device: precision.device), bankDraws: nil,
            uncond: false, dropPose: false, dropMotion: false)
        var fixed = step
        fixed.noiseOffset = 0
        fixed.bankDropRatio = 0
        fixed.snrGamma = 0
        let inputs = HybridMotionInputs(referenceLatent: cond.referenceLatent, targetLatent: cond.targetLatent,
                                        clip: cond.clip, poseFeatures: poseFeatures, motion: motion,
                                        faceMask: b.faceMask, localMask: b.localMask)
        let l = try fixed(inputs, draws: draws)
        // The same draws with pose, motion or both dropped: how much each driving signal lowers the loss.
        func maskedMSE(dropPose: Bool, dropMotion: Bool) throws -> Double {
            var d = draws
            (d.dropPose, d.dropMotion) = (dropPose, dropMotion)
            return try fixed(inputs, draws: d).lossLocal.item()
        }

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

        // Pixel MSE inside the face box between the generated image and the driving frame, and the
        // same for the VAE-decoded reference (what a model that ignores the driving pose scores).
        func faceMSE(_ x: Tensor) throws -> Double { try ValidationMetrics.faceMSE(x, b.target, faceMask: b.faceMask) }
        let decodedReference = try decode(cond.referenceLatent)
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

        var metrics = try animateValClip(directory: directory, generator: g, logger: logger)
        metrics.merge(["loss": try l.loss.item(), "latent_mse": try l.lossMSE.item(), "masked_mse": try l.lossLocal.item(),
                       "masked_mse_undriven": try maskedMSE(dropPose: true, dropMotion: true),
                       "masked_mse_no_pose": try maskedMSE(dropPose: true, dropMotion: false),
                       "masked_mse_no_motion": try maskedMSE(dropPose: false, dropMotion: true),
                       "face_mse_pixels": try faceMSE(generated),
                       "face_mse_pixels_copy_reference": try faceMSE(decodedReference)]) { $1 }
        // Does the generated head take the driving pose? Head angles read by the frozen motion
        // extractor from every generated cell vs its driving frame, next to the error of simply
        // copying the reference, the error of the model's own samples with the driving signals
        // dropped (what it draws when it ignores them), and the error on the VAE's reconstructions
        // of the driving frames (the best a sample through this VAE can score).
        if model.motionExtractor != nil {
            // Angles of the n driving and n reference frames, spread over the n² cells.
            let drivingAngles = try headAngles(b.target)
            let driving = try drivingAngles.indexSelect(0, di)
            let reference = try headAngles(b.reference).indexSelect(0, ri)
            metrics["pose_error_deg"] = try poseError(headAngles(all), driving)
            metrics["pose_error_copy_reference_deg"] = try poseError(reference, driving)
            // The same references sampled with pose and motion dropped (the training dropouts):
            // what this model draws when nothing drives it.
            let undriven = try sample(referenceLatent: cond.referenceLatent, clip: cond.clip,
                                      motion: Tensor.zeros(motion.shape, device: motion.device), pose: nil,
                                      shape: shape, generator: g, logger: logger)
            metrics["pose_error_undriven_deg"] = try poseError(headAngles(undriven).indexSelect(0, ri), driving)
            metrics["pose_error_vae_deg"] = try poseError(headAngles(decode(cond.targetLatent.squeeze(2))), drivingAngles)
        }
        return metrics
    }

    /// Animates a val clip from its reference frame (self-reenactment over time): drive.png (rows:
    /// driving frames, keypoint renders, generated), drive.mp4 (reference | driving | keypoints |
    /// generated at the clip's pace) and the head-pose error along the clip, next to copying the
    /// reference; and drive_stream.png, the same clip through `personalive animate`'s streaming pipeline.
    func animateValClip(directory: URL, generator g: Generator, logger: Logger) throws -> [String: Double] {
        guard let drive else { return [:] }
        let b = try drive.sampler.batch(step: 0).tensors().framePairs().to(precision.device)
        let idx = b.targetIndices
        let fps = (drive.fps[b.clipIDs[0]] ?? 25) / Double(idx.count > 1 ? max(1, idx[1] - idx[0]) : 1)
        let cond = try conditions(b, sampleLatents: false, generator: nil)
        let frames = try sample(referenceLatent: cond.referenceLatent, clip: cond.clip, motion: model.motionEncoder(b.faceCrop),
                                pose: model.poseGuider(cond.canvas.unsqueeze(2)), shape: cond.targetLatent.shape,
                                generator: g, logger: logger)
        let canvas = try cond.canvas * 2 - 1
        let n = b.target.shape[0], s = b.target.shape[2]
        let strip = try (0..<n).map { i in try Tensor.cat([b.target, canvas, frames].map { try $0.narrow(0, start: i, length: 1) }, dim: 0) }
        try ImageIO.write(RGBImage(width: n * s, height: 3 * s, pixels: gridImage(strip)),
                          to: directory.appendingPathComponent("drive.png").path)
        let writer = try VideoWriter(path: directory.appendingPathComponent("drive.mp4").path, width: 4 * s, height: s,
                                     options: .init(fps: fps))
        for i in 0..<n {
            let row = try [b.reference, b.target, canvas, frames].map { try $0.narrow(0, start: i, length: 1) }
            try writer.write(RGBImage(width: 4 * s, height: s, pixels: gridImage(row)))
        }
        try writer.finish()
        guard model.motionExtractor != nil else { return [:] }
        let driving = try headAngles(b.target)
        // The same clip through the streaming pipeline of `personalive animate` (4 denoising steps
        // per frame, motion-interpolated warm-up, keypoint face crops): what the checkpoint gives a user.
        let animator = Animator(pipeline: try StreamingPipeline(model: inferenceModel(), seed: config.validation.seed,
                                                                control: control, logger: logger), logger: logger)
        let streamed = try Tensor.stack(animator.animate(reference: b.reference.narrow(0, start: 0, length: 1), frames: b.target)
            .map(\.image), dim: 0) * 2 - 1
        let streamStrip = try (0..<n).map { i in try Tensor.cat([b.target, streamed].map { try $0.narrow(0, start: i, length: 1) }, dim: 0) }
        try ImageIO.write(RGBImage(width: n * s, height: 2 * s, pixels: gridImage(streamStrip)),
                          to: directory.appendingPathComponent("drive_stream.png").path)
        // Every frame shares the clip's reference: its angles are read once and broadcast.
        return ["drive_pose_error_deg": try poseError(headAngles(frames), driving),
                "drive_stream_pose_error_deg": try poseError(headAngles(streamed), driving),
                "drive_pose_error_copy_reference_deg": try poseError(headAngles(b.reference.narrow(0, start: 0, length: 1)), driving)]
    }

    /// Mean absolute difference in degrees between head angles (N, 3) (or (1, 3), broadcast).
    func poseError(_ angles: Tensor, _ driving: Tensor) throws -> Double {
        try ValidationMetrics.poseError(angles, driving)
    }

    /// DDIM sampling from pure noise with the reference bank written once; one pose/motion
    /// condition per sample; classifier-free guidance (validation.guidance_scale) against a branch
    /// without the conditions in stage1.guidance_uncond. Returns images in [-1, 1].
    func sample(referenceLatent: Tensor, clip: Tensor, motion: Tensor, pose: Tensor?, shape: [Int],
                generator g: Generator, logger: Logger) throws -> Tensor {
        control.clear()
        defer { control.clear() }
        _ = try model.reference(referenceLatent, timestep: Tensor.zeros([shape[0]], dtype: .int64), encoderHiddenStates: clip)
        try control.update(dropRatio: 0, generator: nil)
        let drop = Set(section.guidance_uncond)
        let noMotion = drop.contains("motion") ? try Tensor.zeros(motion.shape, device: motion.device) : motion
        let latents = try Sampling.ddim(shape: shape, steps: config.validation.num_inference_steps,
                                        scheduler: section.scheduler, generator: g, device: precision.device,
                                        logger: logger) { x, t in
            func uncond() throws -> Tensor {
                try model.denoiser(x, timesteps: t, clip: clip, motion: noMotion, poseCond: drop.contains("pose") ? nil : pose)
            }
            return try Sampling.guided(scale: config.validation.guidance_scale) {
                try model.denoiser(x, timesteps: t, clip: clip, motion: motion, poseCond: pose)
            } uncond: {
                drop.contains("reference") ? try control.withoutReference(uncond) : try uncond()
            }
        }
        return try decode(latents.squeeze(2))
    }

    /// The stage's networks seen as an inference model (shared, not frozen again), so that validation
    /// measures head pose and animates through the same front-ends and streaming pipeline as
    /// `personalive animate`. Needs the motion extractor.
    func inferenceModel() throws -> PersonaLiveModel {
        if let shared = sharedModel { return shared }
        guard let me = model.motionExtractor else { throw TrainingError.invalid("no motion extractor") }
        var settings = PipelineSettings()
        settings.image_size = section.image_size
        settings.motion_encoder_size = section.motion_encoder_size
        settings.motion_extractor_size = section.motion_extractor_size
        settings.keypoint_radius = section.renderRadius
        settings.latent_scale = latentScale
        settings.scheduler = section.scheduler
        let m = try PersonaLiveModel(denoiser: model.denoiser, reference: model.reference, poseGuider: model.poseGuider,
                                     motionEncoder: model.motionEncoder, motionExtractor: me, vae: model.vae,
                                     imageEncoder: model.imageEncoder, settings: settings, device: precision.device,
                                     dtype: .float32, sources: [], prepare: false)
        sharedModel = m
        return m
    }

    /// Pitch, yaw and roll in degrees, (N, 3), that the frozen motion extractor reads from images
    /// in [-1, 1] (the inference front-end's reading).
    func headAngles(_ images: Tensor) throws -> Tensor {
        try FrontEnds(model: inferenceModel()).headAngles(images)
    }

    /// Scaled latents → images in [-1, 1] (float32) through the frozen VAE.
    func decode(_ latents: Tensor) throws -> Tensor {
        try FrozenNetworks.decode(model.vae, latents, scale: latentScale, precision: precision)
    }
}
