// Stage2.swift — stage 2 of PersonaLive, fewer-step appearance distillation (train_stage2.py,
// paper Algorithm 1): starting from the stage-1 networks, DistillationStep runs n ~ U{1..4} steps
// of [999, 666, 333, 0] from pure noise (the first n − 1 without gradient), the frozen VAE decodes
// the last x̂0 with gradient, and the loss is MSE + masked MSE + λ_lpips·LPIPS + λ_adv·adversarial
// (from `adv_start`). The timestep-conditioned StyleGAN2 discriminator has its own AdamW
// (2× the generator's learning rate) and steps from `d_start`, frozen while the generator's loss is
// built. Validation compares the 4-step student with the stage-1 model at 4 and at 20 steps.
import Data
import Foundation
import Inference
import Logging
import Media
import Models
import NN
import Torch

public struct Stage2Section: Codable, Sendable {
    /// The stage-1 checkpoint folder the trained networks start from (denoising_unet, reference_unet,
    /// pose_guider, motion_encoder .safetensors and its config.yaml).
    public var stage1_checkpoint: String = ""
    public var vae_checkpoint: String = ""
    public var motion_extractor_checkpoint: String = ""
    /// CLIP weights; empty = the same frozen random CLIP stage 1 trained with (rebuilt from the
    /// stage-1 checkpoint's seed).
    public var image_encoder_path: String = ""
    /// StyleGAN2 weights (e.g. stylegan2_discriminator_ffhq512) loaded non-strictly: the time
    /// layers (`time_embedding.*`, `time_emb_proj.*`) keep their initialisation. Empty: random init.
    public var discriminator_path: String = ""
    /// LPIPS-VGG weights: the lpips package's vgg.pth and torchvision's vgg16 weights (any order).
    public var lpips_path: [String] = []
    /// The timestep-conditioned StyleGAN2 discriminator (the reference's constructor arguments).
    public var discriminator = StyleGAN2Discriminator.Config()
    public var image_size: Int = 512
    public var motion_encoder_size: Int = 224
    public var motion_extractor_size: Int = 256
    public var keypoint_radius: Int = 0
    /// Latent scaling factor; ≤ 0 estimates it from the data as stage 1 does (same probe, same value).
    public var latent_scale: Double = 0.18215
    public var uncond_ratio: Double = 0.1
    public var pose_drop_prob: Double = 0.1
    public var motion_drop_prob: Double = 0.1
    public var bank_drop_ratio: Double = 0.3
    public var reference_frozen: [String] = ["up_blocks.3.*"]
    public var timesteps_list: [Int] = [999, 666, 333, 0]
    /// The step counts n an iteration draws from, uniformly; empty = 1...timesteps_list.count (the
    /// reference's random.randint(1, 4)). A departure for small models: see Configs/tiny/stage2.yaml.
    public var update_steps: [Int] = []
    public var mse_weight: Double = 1
    public var local_weight: Double = 1
    public var lpips_weight: Double = 2
    public var adv_weight: Double = 0.05
    /// The adversarial term counts once more than `adv_start` steps were taken (reference 3000).
    public var adv_start: Int = 3000
    /// The discriminator steps once more than `d_start` steps were taken (reference 5000).
    public var d_start: Int = 5000
    /// The discriminator's learning rate as a multiple of the solver's (reference 2), unless
    /// `optimizers.discriminator.learning_rate` sets it.
    public var discriminator_lr_scale: Double = 2
    /// Per-optimizer overrides of the solver section: `generator`, `discriminator`.
    public var optimizers: [String: OptimizerSection] = [:]
    static let optimizerNames = ["generator", "discriminator"]
    /// Validation also samples the (frozen) stage-1 model at 4 and at validation.num_inference_steps.
    public var compare_stage1: Bool = true
    /// Who runs the n − 1 steps without gradient: `student` (the reference: the model being
    /// trained) or `stage1` (the frozen stage-1 model, so the trained step's inputs do not move
    /// with the student). A departure for small models: see Configs/tiny/stage2.yaml.
    public var rollout: String = "student"
    /// How a no-gradient step's x̂0 reaches the next timestep: `fresh` (the reference: add_noise
    /// with fresh noise) or `ddim` (with the step's own ε̂, i.e. the deterministic DDIM update that
    /// sampling uses, so the trained step sees the states the 4-step sampler visits).
    public var renoise: String = "fresh"
    public var scheduler: DDIMScheduler.Config = Stage1Section.defaultScheduler

    enum K: String, CodingKey, CaseIterable {
        case stage1_checkpoint, vae_checkpoint, motion_extractor_checkpoint, image_encoder_path, discriminator_path,
             lpips_path, discriminator, image_size, motion_encoder_size, motion_extractor_size, keypoint_radius,
             latent_scale, uncond_ratio, pose_drop_prob, motion_drop_prob, bank_drop_ratio, reference_frozen,
             timesteps_list, update_steps, mse_weight, local_weight, lpips_weight, adv_weight, adv_start, d_start,
             discriminator_lr_scale, optimizers, compare_stage1, rollout, renoise, scheduler
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        let d = Stage2Section()
        stage1_checkpoint = try c.value(.stage1_checkpoint, default: d.stage1_checkpoint)
        vae_checkpoint = try c.value(.vae_checkpoint, default: d.vae_checkpoint)
        motion_extractor_checkpoint = try c.value(.motion_extractor_checkpoint, default: d.motion_extractor_checkpoint)
        image_encoder_path = try c.value(.image_encoder_path, default: d.image_encoder_path)
        discriminator_path = try c.value(.discriminator_path, default: d.discriminator_path)
        lpips_path = try c.value(.lpips_path, default: d.lpips_path)
        discriminator = try c.value(.discriminator, default: d.discriminator)
        image_size = try c.value(.image_size, default: d.image_size)
        motion_encoder_size = try c.value(.motion_encoder_size, default: d.motion_encoder_size)
        motion_extractor_size = try c.value(.motion_extractor_size, default: d.motion_extractor_size)
        keypoint_radius = try c.nonNegative(.keypoint_radius, default: d.keypoint_radius)
        latent_scale = try c.value(.latent_scale, default: d.latent_scale)
        uncond_ratio = try c.nonNegative(.uncond_ratio, default: d.uncond_ratio)
        pose_drop_prob = try c.nonNegative(.pose_drop_prob, default: d.pose_drop_prob)
        motion_drop_prob = try c.nonNegative(.motion_drop_prob, default: d.motion_drop_prob)
        bank_drop_ratio = try c.nonNegative(.bank_drop_ratio, default: d.bank_drop_ratio)
        reference_frozen = try c.value(.reference_frozen, default: d.reference_frozen)
        timesteps_list = try c.value(.timesteps_list, default: d.timesteps_list)
        guard !timesteps_list.isEmpty, zip(timesteps_list, timesteps_list.dropFirst()).allSatisfy({ $0 > $1 }),
              timesteps_list.allSatisfy({ (0..<1000).contains($0) }) else {
            throw DecodingError.dataCorruptedError(
                forKey: .timesteps_list, in: c,
                debugDescription: "expected decreasing timesteps in 0...999 (reference: [999, 666, 333, 0]), got \(timesteps_list)")
        }
        update_steps = try c.value(.update_steps, default: d.update_steps)
        if let bad = update_steps.first(where: { !(1...timesteps_list.count).contains($0) }) {
            throw DecodingError.dataCorruptedError(
                forKey: .update_steps, in: c,
                debugDescription: "expected step counts in 1...\(timesteps_list.count) (the length of timesteps_list), got \(bad)")
        }
        mse_weight = try c.nonNegative(.mse_weight, default: d.mse_weight)
        local_weight = try c.nonNegative(.local_weight, default: d.local_weight)
        lpips_weight = try c.nonNegative(.lpips_weight, default: d.lpips_weight)
        try c.checkLPIPS(weight: lpips_weight, paths: lpips_path, key: .lpips_weight)
        adv_weight = try c.nonNegative(.adv_weight, default: d.adv_weight)
        adv_start = try c.nonNegative(.adv_start, default: d.adv_start)
        d_start = try c.nonNegative(.d_start, default: d.d_start)
        discriminator_lr_scale = try c.nonNegative(.discriminator_lr_scale, default: d.discriminator_lr_scale)
        optimizers = try c.optimizerOverrides(.optimizers, default: d.optimizers, names: Self.optimizerNames, stage: "stage 2")
        compare_stage1 = try c.value(.compare_stage1, default: d.compare_stage1)
        rollout = try c.value(.rollout, default: d.rollout)
        guard ["student", "stage1"].contains(rollout) else {
            throw DecodingError.dataCorruptedError(forKey: .rollout, in: c,
                                                   debugDescription: "expected student or stage1, got '\(rollout)'")
        }
        renoise = try c.value(.renoise, default: d.renoise)
        guard ["fresh", "ddim"].contains(renoise) else {
            throw DecodingError.dataCorruptedError(forKey: .renoise, in: c,
                                                   debugDescription: "expected fresh or ddim, got '\(renoise)'")
        }
        scheduler = try c.value(.scheduler, default: d.scheduler)
    }

    public var renderRadius: Int { keypoint_radius > 0 ? keypoint_radius : Keypoints.renderRadius(canvasSize: image_size) }
}

/// The four networks stage 1 trains, with the reference attention joining the two UNets.
final class PortraitDenoiser {
    let denoiser: UNet3DConditionModel
    let reference: UNet2DConditionModel
    let poseGuider: PoseGuider
    let motionEncoder: MotionEncoder
    let control: ReferenceAttentionControl

    init(model: JSONValue, file: String) throws {
        func part<T: Decodable>(_ t: T.Type, _ key: String) throws -> T {
            try ConfigLoader.section(T.self, model[key], name: "model.\(key)", file: file)
        }
        denoiser = try UNet3DConditionModel(part(UNet3DConditionModel.Config.self, "denoising_unet"))
        reference = try UNet2DConditionModel(part(UNet2DConditionModel.Config.self, "reference_unet"), withOutputLayers: false)
        poseGuider = try PoseGuider(part(PoseGuider.Config.self, "pose_guider"))
        motionEncoder = try MotionEncoder(part(MotionEncoder.Config.self, "motion_encoder"))
        control = try ReferenceAttentionControl(writer: reference, reader: denoiser, fusionBlocks: "full", roundBankToFP16: true)
    }

    var modules: [(String, Module)] {
        [("denoising_unet", denoiser), ("reference_unet", reference), ("pose_guider", poseGuider),
         ("motion_encoder", motionEncoder)]
    }

    /// Loads every module strictly from a stage-1 (or stage-2) checkpoint folder.
    func load(checkpoint path: String, key: String) throws {
        for (name, m) in modules {
            let file = URL(fileURLWithPath: path).appendingPathComponent("\(name).safetensors").path
            guard FileManager.default.fileExists(atPath: file) else {
                throw TrainingError.invalid("\(key): \(path) has no \(name).safetensors (expected a stage-1 checkpoint folder)")
            }
            try m.load(from: SafeTensorsSource(path: file))
        }
    }

    /// PersonaLive's 4-step inference: DDIM from pure noise over `timesteps` with step length
    /// t[0] − t[1] (the last step returns x̂0), the reference bank written once. Latents out.
    func sample(noise: Tensor, timesteps: [Int], scheduler: DDIMScheduler.Config, referenceLatent: Tensor, clip: Tensor,
                pose: Tensor, motion: Tensor, logger: Logger) throws -> Tensor {
        control.clear()
        defer { control.clear() }
        let n = noise.shape[0]
        _ = try reference(referenceLatent, timestep: Tensor.zeros([n], dtype: .int64, device: noise.device),
                          encoderHiddenStates: clip)
        try control.update(dropRatio: 0, generator: nil)
        return try Sampling.ddim(noise: noise, timesteps: timesteps, scheduler: scheduler, logger: logger) { x, t in
            try denoiser(x, timesteps: t, clip: clip, motion: motion, poseCond: pose)
        }
    }
}

public final class Stage2: PairFedStage, TrainingStage {
    public let section: Stage2Section
    let student: PortraitDenoiser
    /// The frozen stage-1 model validation compares with (compare_stage1), else nil.
    let teacher: PortraitDenoiser?
    let discriminator: StyleGAN2Discriminator
    let lpips: LPIPS?
    let vae: AutoencoderKL
    let imageEncoder: CLIPVisionModelWithProjection
    let clipProcessor: CLIPImageProcessor
    let motionExtractor: MotionExtractor?
    let step: DistillationStep
    let scheduler: DDIMScheduler
    let useGT: Bool
    var latentScale: Double

    public init(config: TrainingConfig, logger: Logger) throws {
        let precision = try Precision(solver: config.solver, logger: logger)
        let file = config.sourcePath
        let section = try ConfigLoader.section(Stage2Section.self, config.stageSection, name: "stage2", file: file)
        self.section = section
        useGT = config.data.use_gt_keypoints
        guard !section.stage1_checkpoint.isEmpty else { throw TrainingError.invalid("\(file): stage2.stage1_checkpoint is required") }
        let s1Config = URL(fileURLWithPath: section.stage1_checkpoint).appendingPathComponent("config.yaml").path
        guard FileManager.default.fileExists(atPath: s1Config) else {
            throw TrainingError.invalid("stage2.stage1_checkpoint: \(section.stage1_checkpoint) has no config.yaml (expected a checkpoint folder of a stage1 run)")
        }
        let s1 = try TrainingConfig.load(path: s1Config)
        guard s1.stage == "stage1" || s1.stage == "stage2" else {
            throw TrainingError.invalid("stage2.stage1_checkpoint: \(section.stage1_checkpoint) is a '\(s1.stage)' checkpoint")
        }
        // Built in stage 1's order under stage 1's seed, so that a random CLIP (no
        // image_encoder_path) is the very encoder stage 1 trained with.
        let (student, built) = try RandomContext.with(try Generator(seed: s1.seed &+ 1)) {
            let student = try PortraitDenoiser(model: config.model, file: file)
            let clip = try FrozenNetworks.imageEncoder(config, path: section.image_encoder_path, section: "stage2",
                                                       precision: precision, logger: logger)
            return (student, clip)
        }
        try student.load(checkpoint: section.stage1_checkpoint, key: "stage2.stage1_checkpoint")
        // Stage 1 saves its frozen random CLIP: load exactly those weights when it did.
        let savedCLIP = URL(fileURLWithPath: section.stage1_checkpoint).appendingPathComponent("image_encoder.safetensors").path
        if section.image_encoder_path.isEmpty, FileManager.default.fileExists(atPath: savedCLIP) {
            try built.0.load(from: SafeTensorsSource(path: savedCLIP))
        }
        logger.info("stage-2 networks initialised from \(section.stage1_checkpoint)")
        self.student = student
        (imageEncoder, clipProcessor) = built
        if section.compare_stage1 || section.rollout == "stage1" {
            let t = try PortraitDenoiser(model: config.model, file: file)
            try t.load(checkpoint: section.stage1_checkpoint, key: "stage2.stage1_checkpoint")
            for (_, m) in t.modules { try FrozenNetworks.freeze(m, precision) }
            teacher = t
        } else {
            teacher = nil
        }
        discriminator = try StyleGAN2Discriminator(section.discriminator)
        if !section.discriminator_path.isEmpty {
            let report = try discriminator.load(from: CheckpointModules.weights(section.discriminator_path, files: ["discriminator.safetensors"]),
                                                allowMissing: ["time_embedding.*", "time_emb_proj.*"])
            logger.info("discriminator initialised from \(section.discriminator_path) (\(report))")
        }
        lpips = section.lpips_weight > 0 ? try LPIPS(weights: section.lpips_path) : nil
        if let lpips { try precision.placeFrozen(lpips) }
        vae = try FrozenNetworks.vae(config, path: section.vae_checkpoint, section: "stage2", precision: precision, logger: logger)
        if !useGT || !section.motion_extractor_checkpoint.isEmpty {
            motionExtractor = try FrozenNetworks.motionExtractor(path: section.motion_extractor_checkpoint, section: "stage2", file: file,
                                                   precision: precision, logger: logger)
        } else {
            motionExtractor = nil
        }
        try student.reference.freeze(section.reference_frozen)
        for (_, m) in student.modules { try precision.placeTrained(m) }
        try precision.placeTrained(discriminator)
        scheduler = try DDIMScheduler(section.scheduler)
        var s = DistillationStep(denoiser: student.denoiser, reference: student.reference, control: student.control,
                                 scheduler: scheduler)
        s.timesteps = section.timesteps_list
        s.bankDropRatio = section.bank_drop_ratio
        s.renoiseWithPrediction = section.renoise == "ddim"
        step = s

        let ds = try FrozenNetworks.dataset(config, logger: logger)
        latentScale = try FrozenNetworks.latentScale(section.latent_scale, vae: vae, dataset: ds, config: config,
                                                     imageSize: section.image_size, precision: precision, logger: logger)
        let feeds = try stageFeeds(config, dataset: ds, imageSize: section.image_size,
                                   motionEncoderSize: section.motion_encoder_size,
                                   motionExtractorSize: section.motion_extractor_size, device: precision.device)
        super.init(config: config, precision: precision, feeds: feeds)
    }

    public var savedModules: [(String, Module)] { student.modules + [("discriminator", discriminator)] }

    /// The latent scale the checkpoints were trained with (estimated from the data when configured ≤ 0).
    public var pipelineMetadata: [String: Double] { ["latent_scale": latentScale] }

    public var trainableParameters: [(String, Tensor)] {
        savedModules.flatMap { name, m in m.namedParameters().filter { $0.1.requiresGrad }.map { ("\(name).\($0.0)", $0.1) } }
    }

    /// `generator`: pose guider, motion encoder, denoising UNet, reference UNet (less
    /// reference_frozen); `discriminator`: its own AdamW at discriminator_lr_scale × the solver's lr.
    public func optimizerSpecs(config: TrainingConfig) throws -> [OptimizerSpec] {
        let all = trainableParameters
        var g = OptimizerSpec(name: "generator", parameters: all.filter { !$0.0.hasPrefix("discriminator.") },
                              solver: config.solver, trainBatch: batchSize)
        var d = g
        d.name = "discriminator"
        d.parameters = all.filter { $0.0.hasPrefix("discriminator.") }
        d.learningRate = g.learningRate * section.discriminator_lr_scale
        g = try g.overridden(by: section.optimizers["generator"], from: all, key: "stage2.optimizers.generator")
        d = try d.overridden(by: section.optimizers["discriminator"], from: all, key: "stage2.optimizers.discriminator")
        return [g, d]
    }

    // MARK: front-ends (as stage 1's)

    struct Conditions {
        let referenceLatent: Tensor, clip: Tensor, canvas: Tensor
    }

    func conditions(_ b: PairTensors, sampleLatents: Bool, generator: Generator?) throws -> Conditions {
        try Torch.noGrad {
            let ref = try FrozenNetworks.encode(vae, b.reference, scale: latentScale, sample: sampleLatents,
                                                generator: generator, precision: precision)
            let clip = try FrozenNetworks.clipEmbeds(imageEncoder, clipProcessor, b.reference, precision: precision)
            let canvas = try Keypoints.draw(keypoints(b), height: section.image_size, width: section.image_size,
                                            radius: section.renderRadius)
            return Conditions(referenceLatent: ref, clip: clip, canvas: canvas)
        }
    }

    func keypoints(_ b: PairTensors) throws -> Tensor {
        if useGT, let pose = b.targetPose, let kc = b.targetKeypoints {
            let rot = try Keypoints.rotationMatrix(pitch: pose.select(1, 0), yaw: pose.select(1, 1), roll: pose.select(1, 2))
            let rotated = try kc.matmul(rot) * pose.narrow(1, start: 6, length: 1).unsqueeze(2)
            let xy = try rotated.narrow(2, start: 0, length: 2) + pose.narrow(1, start: 3, length: 2).unsqueeze(1)
            return try Tensor.cat([xy, rotated.narrow(2, start: 2, length: 1)], dim: 2)
        }
        guard let me = motionExtractor else { throw TrainingError.invalid("no motion extractor and no ground truth") }
        return try me(precision.frozenInput(b.motionInput)).to(.float32)
    }

    /// Scaled latents → images through the frozen VAE, with gradient and not clamped (the script
    /// decodes x̂0 so for the loss).
    func decodeForLoss(_ latents: Tensor) throws -> Tensor {
        try vae.decode(precision.frozenInput(latents / latentScale)).to(.float32)
    }

    // MARK: training

    /// The terms of the generator's loss on decoded images `x̂` against `x` with pixel masks.
    func generatorTerms(_ xHat: Tensor, _ x: Tensor, mask: Tensor, timesteps: Tensor, adversarial: Bool) throws -> [String: Tensor] {
        let mse = try F.mseLoss(xHat, x)
        let local = try F.mseLoss(xHat * mask, x * mask)
        var total = try mse * section.mse_weight + local * section.local_weight
        var terms = ["loss_mse": mse, "loss_local": local]
        if let lpips {
            let p = try lpips(xHat, x).mean()
            terms["loss_lpips"] = p
            total = try total + p * section.lpips_weight
        }
        if adversarial {
            let adv = try discriminator.generatorLoss(fake: xHat, timesteps: timesteps)
            terms["loss_adv"] = adv
            total = try total + adv * section.adv_weight
        }
        terms["loss"] = total
        return terms
    }

    public func iterate(_ context: StepContext, sample: Int, generator: Generator) throws {
        let b = try feed.batch(sample / batchSize)
        let dev = precision.device
        // The target's latent is not needed: the loss is in pixel space.
        let cond = try conditions(b, sampleLatents: true, generator: generator)
        let x = b.target
        let n = x.shape[0]
        let latentShape = [n, cond.referenceLatent.shape[1], 1] + cond.referenceLatent.shape.suffix(2)
        // Draws in the script's order: the start noise, then uncond, n, motion and pose flags.
        let noise = try Tensor.randn(latentShape, generator: generator, device: dev)
        let u = try Tensor.rand([3], generator: generator).toArray(Float.self)
        let steps = section.update_steps.isEmpty
            ? try Tensor.randint(1, section.timesteps_list.count + 1, [1], generator: generator).itemInt()
            : section.update_steps[try Tensor.randint(0, section.update_steps.count, [1], generator: generator).itemInt()]
        let mask = try (b.faceMask + b.localMask).expand([n, x.shape[1], x.shape[2], x.shape[3]])
        let adversarial = context.step > section.adv_start && section.adv_weight > 0
        let out = try context.only("generator") { () throws -> (terms: [String: Tensor], xHat: Tensor, t: Tensor) in
            let pose = try student.poseGuider(cond.canvas.unsqueeze(2))
            let motion = try student.motionEncoder(b.faceCrop)
            let draws = DistillationDraws(steps: steps, noiseInit: noise, uncond: Double(u[0]) < section.uncond_ratio,
                                          dropPose: Double(u[2]) < section.pose_drop_prob,
                                          dropMotion: Double(u[1]) < section.motion_drop_prob)
            let r: DistillationOutputs
            if let teacher, section.rollout == "stage1", steps > 1 {
                r = try teacherRollout(teacher, cond: cond, b: b, draws: draws, pose: pose, motion: motion, generator: generator)
            } else {
                r = try step(DistillationInputs(referenceLatent: cond.referenceLatent, clip: cond.clip, poseFeatures: pose,
                                                motion: motion), draws: draws, generator: generator)
            }
            let xHat = try decodeForLoss(r.x0.squeeze(2))
            let t = try Tensor.full([n], Double(r.lastTimestep), dtype: .int64, device: dev)
            return (try generatorTerms(xHat, x, mask: mask, timesteps: t, adversarial: adversarial), xHat, t)
        }
        try context.record(out.terms)
        // n of this iteration: the loss depends strongly on it (n = 1 predicts x̂0 from pure noise).
        try context.record(["update_steps": Tensor.scalar(Double(steps))])
        try context.backward(out.terms["loss"]!, for: "generator")
        try context.step("generator")
        if context.step > section.d_start {
            let dLoss = try context.only("discriminator") {
                try discriminator.discriminatorLoss(fake: out.xHat.detach(), real: x, timesteps: out.t)
            }
            try context.record(["loss_d": dLoss])
            try context.backward(dLoss, for: "discriminator")
            try context.step("discriminator")
        }
    }

    /// rollout: stage1 — the frozen stage-1 model runs the first n − 1 steps (no gradient), its x̂0
    /// re-noised to t[n − 1] as `renoise` says; the student runs the n-th step from there.
    func teacherRollout(_ teacher: PortraitDenoiser, cond: Conditions, b: PairTensors, draws: DistillationDraws,
                        pose: Tensor, motion: Tensor, generator: Generator) throws -> DistillationOutputs {
        let n = draws.steps, list = section.timesteps_list
        let x = try Torch.noGrad { () throws -> Tensor in
            var t = DistillationStep(denoiser: teacher.denoiser, reference: teacher.reference, control: teacher.control,
                                     scheduler: scheduler)
            t.timesteps = list
            t.bankDropRatio = 0
            t.renoiseWithPrediction = step.renoiseWithPrediction
            var d = draws
            d.steps = n - 1
            let out = try t(DistillationInputs(referenceLatent: cond.referenceLatent, clip: cond.clip,
                                               poseFeatures: teacher.poseGuider(cond.canvas.unsqueeze(2)),
                                               motion: teacher.motionEncoder(b.faceCrop)), draws: d, generator: generator)
            return try t.renoise(out.x0, eps: out.stepEps[n - 2], draw: nil, to: list[n - 1], generator: generator)
        }
        var last = step
        last.timesteps = [list[n - 1]]
        var d = draws
        d.steps = 1
        d.noiseInit = x
        return try last(DistillationInputs(referenceLatent: cond.referenceLatent, clip: cond.clip, poseFeatures: pose,
                                           motion: motion), draws: d, generator: generator)
    }

    // MARK: validation

    /// The fixed val pairs sampled by the student in 4 steps and, with compare_stage1, by the
    /// stage-1 model in 4 and in validation.num_inference_steps steps (same start noise): pixel
    /// MSE / PSNR against the driving frame, head-pose error against it, seconds per sample; a grid
    /// reference | driving | stage 1 (N steps) | stage 1 (4 steps) | student (4 steps).
    public func validate(step stepIndex: Int, directory: URL, logger: Logger) throws -> [String: Double] {
        let b = try valFeed.batch(0)
        let cond = try conditions(b, sampleLatents: false, generator: nil)
        let n = b.target.shape[0]
        let shape = [n, cond.referenceLatent.shape[1], 1] + cond.referenceLatent.shape.suffix(2)
        let noise = try Tensor.randn(shape, generator: Generator(seed: config.validation.seed), device: precision.device)
        let few = section.timesteps_list
        let manySteps = max(1, config.validation.num_inference_steps)
        let stride = max(1, 1000 / manySteps)
        // Trailing spacing with the DDIM step length 1000/N, as `setTimesteps` would, ending at x̂0.
        let many = (0..<manySteps).map { 999 - $0 * stride }
        var metrics: [String: Double] = [:]
        let driving = try motionExtractor.map { _ in try headAngles(b.target) }

        func run(_ model: PortraitDenoiser, _ timesteps: [Int], _ name: String) throws -> Tensor {
            let t0 = Date()
            let latents = try model.sample(noise: noise, timesteps: timesteps, scheduler: section.scheduler,
                                           referenceLatent: cond.referenceLatent, clip: cond.clip,
                                           pose: model.poseGuider(cond.canvas.unsqueeze(2)),
                                           motion: model.motionEncoder(b.faceCrop), logger: logger)
            let images = try FrozenNetworks.decode(vae, latents.squeeze(2), scale: latentScale, precision: precision)
            metrics["\(name)_seconds_per_sample"] = Date().timeIntervalSince(t0) / Double(n)
            // Pixel error in [0, 1] units against the driving frame, and PSNR per sample, averaged.
            let diff: Tensor = try (images - b.target) / 2
            let perSample: [Double] = try diff.square().reshape([n, -1]).mean([1]).toArray(Float.self).map { Double($0) }
            metrics["\(name)_mse"] = perSample.reduce(0, +) / Double(n)
            let psnr: [Double] = perSample.map { (m: Double) -> Double in 10 * log10(1 / max(m, 1e-10)) }
            metrics["\(name)_psnr"] = psnr.reduce(0, +) / Double(n)
            if let driving { metrics["\(name)_pose_error_deg"] = try (headAngles(images) - driving).abs().mean().item() }
            return images
        }
        // An untimed first pass, so that no figure carries the first call's allocations.
        _ = try student.sample(noise: noise, timesteps: [few[0]], scheduler: section.scheduler, referenceLatent: cond.referenceLatent,
                               clip: cond.clip, pose: student.poseGuider(cond.canvas.unsqueeze(2)),
                               motion: student.motionEncoder(b.faceCrop), logger: logger)
        var columns = [b.reference, b.target]
        if let teacher {
            columns.append(try run(teacher, many, "stage1_\(manySteps)step"))
            columns.append(try run(teacher, few, "stage1_\(few.count)step"))
        }
        columns.append(try run(student, few, "student_\(few.count)step"))
        if let driving {
            metrics["pose_error_copy_reference_deg"] = try (headAngles(b.reference) - driving).abs().mean().item()
        }
        let s = b.target.shape
        try ImageIO.write(RGBImage(width: columns.count * s[3], height: s[0] * s[2], pixels: gridImage(columns)),
                          to: directory.appendingPathComponent("grid.png").path)
        return metrics
    }

    /// Pitch, yaw and roll in degrees (N, 3) read by the frozen motion extractor.
    func headAngles(_ images: Tensor) throws -> Tensor {
        guard let me = motionExtractor else { throw TrainingError.invalid("no motion extractor") }
        let size = section.motion_extractor_size
        var x = try (images + 1) / 2
        if x.shape[2] != size || x.shape[3] != size { x = try F.interpolate(x, size: (size, size), mode: .bilinear) }
        let out = try me.detector(precision.frozenInput(x))
        return try Keypoints.headAngles(pitch: out.pitch, yaw: out.yaw, roll: out.roll, numBins: me.config.num_bins,
                                        idx: me.idx_tensor)
    }
}
