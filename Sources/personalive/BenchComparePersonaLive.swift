// BenchComparePersonaLive.swift — the PersonaLive cells of `personalive bench compare`, on the networks
// of Configs/tiny/model.yaml with random weights:
//   - the stage-1 training step of Configs/tiny/stage1.yaml (Stage1.swift's `losses` from the cached
//     front-end outputs on: HybridMotionStep — reference-UNet writer, banks, UNet3D reader with motion
//     modules, x̂0 losses — then backward, gradient clipping and AdamW, as Trainer.swift runs it);
//   - the streaming chunk: one denoiser window pass (temporal modules on, as the stage-3 model that
//     `animate` streams, reference banks read, inference mode), what StreamingEngine runs per chunk.
// The PyTorch side is Sources/personalive/Peer/ (PersonaLive's modules in PyTorch eager, checked against
// ../shared/fixtures by check_peer_fixtures.py). It loads *our* weights and inputs from safetensors
// files written here, and before any timing the two sides' stage-1 losses and window outputs are
// compared, so that both time the same computation.
import Foundation
import Inference
import Models
import NN
import Torch
import Training

final class PersonaLiveBenchCells {
    let stage1Batch: Int
    let step: HybridMotionStep
    let inputs: HybridMotionInputs
    let draws: HybridMotionDraws
    let trainable: [Tensor]
    let optimizer: AdamW
    let maxGradNorm: Double
    let streamDenoiser: UNet3DConditionModel
    let streamControl: ReferenceAttentionControl
    let window: (x: Tensor, t: Tensor, clip: Tensor, motion: Tensor, pose: Tensor)
    /// What the peer gets in its set-up request.
    let peerSpec: [String: Any]
    /// Our first step's loss and parameter counts, for the parity check.
    let firstLoss: Double
    let stage1Parameters: Int, streamParameters: Int

    /// Builds both cells' networks and inputs and writes them to `dir` for the peer.
    init(stage1Config path: String, root: String, batch: Int, dir: URL) throws {
        let cfg = try TrainingConfig.load(path: path)
        guard cfg.stage == "stage1" else { throw CLIError("\(path) is a \(cfg.stage) config, not stage1") }
        let section = try ConfigLoader.section(Stage1Section.self, cfg.stageSection, name: "stage1", file: path)
        func part<T: Decodable>(_ t: T.Type, _ key: String) throws -> T {
            try ConfigLoader.section(T.self, cfg.model[key], name: "model.\(key)", file: path)
        }
        let g = try Generator(seed: 0)
        try Torch.manualSeed(0)
        stage1Batch = batch

        // Stage 1: the trained networks and the step, configured as Stage1.swift does.
        let denoiserConfig = try part(UNet3DConditionModel.Config.self, "denoising_unet")
        let referenceConfig = try part(UNet2DConditionModel.Config.self, "reference_unet")
        let denoiser = try UNet3DConditionModel(denoiserConfig)
        let reference = try UNet2DConditionModel(referenceConfig, withOutputLayers: false)
        try reference.freeze(section.reference_frozen)
        let control = try ReferenceAttentionControl(writer: reference, reader: denoiser, fusionBlocks: "full",
                                                    roundBankToFP16: true)
        var s = HybridMotionStep(denoiser: denoiser, reference: reference, control: control,
                                 scheduler: try DDIMScheduler(section.scheduler))
        s.noiseOffset = section.noise_offset
        s.bankDropRatio = section.bank_drop_ratio
        s.lossWeights = (section.loss_mse_weight, section.loss_local_weight)
        s.snrGamma = section.snr_gamma
        step = s
        trainable = (denoiser.trainableParameters() + reference.trainableParameters()).map(\.1)
        let solver = cfg.solver
        optimizer = try AdamW(groups: [ParamGroup(params: trainable, lr: solver.learning_rate, weightDecay: solver.adam_weight_decay)],
                              betas: (solver.adam_beta1, solver.adam_beta2), eps: solver.adam_epsilon, fused: solver.adam_fused)
        maxGradNorm = solver.max_grad_norm

        // One batch as the feature cache hands it over (latents, CLIP embeddings, PoseGuider features,
        // motion tokens, masks), and one set of draws with nothing dropped.
        let h = section.image_size / 8, c = denoiserConfig.in_channels
        let c0 = denoiserConfig.block_out_channels[0]
        let clipDim = try referenceConfig.cross_attention_dim.perBlock(referenceConfig.down_block_types.count,
                                                                       key: "cross_attention_dim")[0]
        let motionEncoder = try part(MotionEncoder.Config.self, "motion_encoder")
        let size = section.image_size
        inputs = HybridMotionInputs(
            referenceLatent: try Tensor.randn([batch, c, h, h], generator: g),
            targetLatent: try Tensor.randn([batch, c, 1, h, h], generator: g),
            clip: try Tensor.randn([batch, 1, clipDim], generator: g),
            poseFeatures: try Tensor.randn([batch, c0, 1, h, h], generator: g),
            motion: try Tensor.randn([batch, motionEncoder.tokens, motionEncoder.out_ch], generator: g),
            faceMask: try Tensor.rand([batch, 1, size, size], generator: g).gt(0.5).to(.float32),
            localMask: try Tensor.rand([batch, 1, size, size], generator: g).gt(0.8).to(.float32))
        draws = HybridMotionDraws(
            noise: try Tensor.randn([batch, c, 1, h, h], generator: g),
            noiseOffset: try Tensor.randn([batch, c, 1, 1, 1], generator: g),
            timesteps: try Tensor.randint(0, 1000, [batch], generator: g),
            bankDraws: nil, uncond: false, dropPose: false, dropMotion: false)

        // The streaming chunk: the same UNets with temporal modules, as the stage-3 model.
        var streamConfig = denoiserConfig
        streamConfig.use_temporal_module = true
        let streamDenoiser = try UNet3DConditionModel(streamConfig)
        let streamReference = try UNet2DConditionModel(referenceConfig, withOutputLayers: false)
        let streamControl = try ReferenceAttentionControl(writer: streamReference, reader: streamDenoiser, fusionBlocks: "full",
                                                          roundBankToFP16: true)
        let settings = try cfg.model["pipeline"].map { try ConfigLoader.section(PipelineSettings.self, $0, name: "model.pipeline", file: path) }
            ?? PipelineSettings()
        let w = settings.stream.windowFrames
        let referenceLatent = try Tensor.randn([1, c, h, h], generator: g)
        let streamClip = try Tensor.randn([1, 1, clipDim], generator: g)
        let window = (x: try Tensor.randn([1, c, w, h, h], generator: g),
                  t: try Tensor(settings.stream.windowTimesteps as [Int64], shape: [w]),
                  clip: streamClip,
                  motion: try Tensor.randn([1, w, motionEncoder.tokens, motionEncoder.out_ch], generator: g),
                  pose: try Tensor.randn([1, c0, w, h, h], generator: g))
        // The stream's reference banks (StreamingEngine's start).
        try Torch.noGrad {
            streamControl.clear()
            _ = try streamReference(referenceLatent, timestep: Tensor.zeros([1], dtype: .int64), encoderHiddenStates: streamClip)
            try streamControl.update()
            streamControl.clearWriter()
        }
        (self.streamDenoiser, self.streamControl, self.window) = (streamDenoiser, streamControl, window)

        // Parity values (before any step) and the files the peer loads.
        // (Compared without the bank token drop, whose random draws come from each side's own generator.)
        var undropped = step
        undropped.bankDropRatio = 0
        let first = try undropped(inputs, draws: draws)
        firstLoss = try first.loss.item()
        stage1Parameters = denoiser.parameterCount + reference.parameterCount
        streamParameters = streamDenoiser.parameterCount + streamReference.parameterCount
        let windowOut = try Torch.inferenceMode {
            try streamDenoiser(window.x, timesteps: window.t, clip: window.clip, motion: window.motion, poseCond: window.pose)
        }
        try SafeTensors.write(denoiser.stateDict(), to: dir.appendingPathComponent("stage1_denoising_unet.safetensors").path)
        try SafeTensors.write(reference.stateDict(), to: dir.appendingPathComponent("stage1_reference_unet.safetensors").path)
        try SafeTensors.write(streamDenoiser.stateDict(), to: dir.appendingPathComponent("stream_denoising_unet.safetensors").path)
        try SafeTensors.write(streamReference.stateDict(), to: dir.appendingPathComponent("stream_reference_unet.safetensors").path)
        try SafeTensors.write([
            ("reference_latent", inputs.referenceLatent), ("target_latent", inputs.targetLatent), ("clip", inputs.clip),
            ("pose_features", inputs.poseFeatures), ("motion", inputs.motion), ("face_mask", inputs.faceMask),
            ("local_mask", inputs.localMask), ("noise", draws.noise), ("noise_offset", draws.noiseOffset!),
            ("timesteps", draws.timesteps), ("loss", first.loss.detach()),
            ("window_reference_latent", referenceLatent), ("window_latents", window.x), ("window_timesteps", window.t),
            ("window_clip", window.clip), ("window_motion", window.motion), ("window_pose", window.pose),
            ("window_out", windowOut),
        ], to: dir.appendingPathComponent("inputs.safetensors").path)
        func json(_ v: JSONValue) throws -> Any { try JSONSerialization.jsonObject(with: JSONEncoder().encode(v), options: [.fragmentsAllowed]) }
        peerSpec = [
            "dir": dir.path,
            "peer_dir": root + "/Sources/personalive/Peer",
            "denoising_unet": try json(cfg.model["denoising_unet"] ?? .object([:])),
            "reference_unet": try json(cfg.model["reference_unet"] ?? .object([:])),
            "scheduler": try JSONSerialization.jsonObject(with: JSONEncoder().encode(section.scheduler)),
            "noise_offset": section.noise_offset, "bank_drop_ratio": section.bank_drop_ratio, "snr_gamma": section.snr_gamma,
            "loss_weights": [section.loss_mse_weight, section.loss_local_weight],
            "reference_frozen": section.reference_frozen,
            "lr": solver.learning_rate, "betas": [solver.adam_beta1, solver.adam_beta2], "eps": solver.adam_epsilon,
            "weight_decay": solver.adam_weight_decay, "fused": solver.adam_fused, "max_grad_norm": solver.max_grad_norm,
            "stage1_batch": batch,
        ]
    }

    /// The peer's set-up reply must show the same networks (parameter counts) computing the same values
    /// (the first stage-1 loss, the window output) before anything is timed.
    func checkParity(_ hello: [String: Any]) throws {
        guard let p = hello["personalive"] as? [String: Any], let loss = p["stage1_loss"] as? Double,
              let windowDiff = p["window_max_abs_diff"] as? Double, let n1 = p["stage1_parameters"] as? Int,
              let n2 = p["stream_parameters"] as? Int else {
            throw CLIError("the PyTorch peer did not set up the stage-1 and streaming cells: \(hello)")
        }
        print("stage-1 step: tiny UNet3D + reference UNet, \(stage1Parameters) parameters (ours) / \(n1) (PyTorch), batch \(stage1Batch); "
              + "streaming chunk: with temporal modules, \(streamParameters) / \(n2) parameters, window \(window.x.shape)")
        print(String(format: "parity before timing: stage-1 loss %.6f (ours) / %.6f (PyTorch); window output max |Δ| %.2e",
                     firstLoss, loss, windowDiff))
        guard n1 == stage1Parameters, n2 == streamParameters else {
            throw CLIError("the PyTorch networks have other parameter counts than ours: the configs differ")
        }
        guard abs(loss - firstLoss) <= 1e-4 * max(1, abs(firstLoss)), windowDiff <= 1e-3 else {
            throw CLIError("the PyTorch peer computes other values than ours on the same weights and inputs: "
                           + "the comparison would time different work")
        }
    }

    /// Trainer.swift's step on one cached batch: forward, backward, clipping, AdamW.
    func stage1Step() throws {
        try optimizer.zeroGrad()
        let out = try step(inputs, draws: draws)
        try out.loss.backward()
        _ = try Autograd.clipGradNorm(trainable, maxNorm: maxGradNorm)
        try optimizer.step()
    }

    /// One denoiser call over the window, reading the reference banks.
    func windowPass() throws -> Tensor {
        try streamDenoiser(window.x, timesteps: window.t, clip: window.clip, motion: window.motion, poseCond: window.pose)
    }
}
