// BenchDenoiser.swift — `personalive bench denoiser --config tiny|sd15|MODEL.yaml`: one streaming
// window forward of the denoising UNet (16 frames = 4 chunks at t = 0/333/666/999, temporal modules
// on) reading the reference bank through the ReferenceAttentionControl, with 0 and with 3 historical
// keyframes; milliseconds per forward and peak RSS after each phase. The baseline, measured in the
// same run, is the reference UNet's pass at t = 0 that fills the bank. Prints, never asserts.
import ArgumentParser
import Foundation
import Inference
import Models
import NN
import Torch
import Training

struct BenchDenoiserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "denoiser",
        abstract: "Denoising UNet window forward (16 frames, 0 and 3 keyframes): ms and peak RSS, against the reference UNet pass.")

    @Option(help: "tiny, sd15 (Configs/<name>/model.yaml) or a model.yaml path (denoising_unet and reference_unet sections).")
    var config: String = "tiny"

    @Option(help: "Frames in the window (the streaming window is 4 chunks × 4 frames).") var frames: Int = 16
    @Option(help: "Historical keyframes for the second measurement.") var keyframes: Int = 3
    @Option(help: "Latent height and width (default: the denoiser's sample_size).") var size: Int?
    @Option(help: "Timed forwards per measurement (default: 5 for tiny, 2 otherwise).") var steps: Int?
    @Option(help: "Untimed warm-up forwards per measurement.") var warmup: Int = 1
    @Option(help: "cpu, cuda or cuda:N (default: cuda when available).") var device: String?
    @Option(help: "float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU).") var dtype: String?
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard frames > 0, keyframes >= 0, warmup >= 0, steps ?? 1 > 0 else {
            throw ValidationError("--frames and --steps must be positive, --keyframes and --warmup not negative")
        }
        if let size, size <= 0 { throw ValidationError("--size must be positive") }
    }

    /// The model.yaml of `--config` (tiny / sd15 under Configs/, or a path).
    static func modelPath(_ config: String, root: String) throws -> String {
        try benchModelPath(config, root: root)
    }

    /// --dtype, defaulting to float16 on CUDA and float32 on the CPU.
    static func parseDType(_ dtype: String?, device dev: Device) throws -> DType {
        switch dtype ?? (dev == .cpu ? "float32" : "float16") {
        case "float32", "fp32": return .float32
        case "float16", "fp16": return .float16
        case "bfloat16", "bf16": return .bfloat16
        case let other: throw ValidationError("--dtype must be float32, float16 or bfloat16 (got '\(other)')")
        }
    }

    func run() throws {
        _ = try global.setUp(label: "bench")
        let path = try Self.modelPath(config, root: packageRootForConfigs())
        let doc = try ConfigLoader.load(JSONValue.self, path: path)
        var dc = try ConfigLoader.section(UNet3DConditionModel.Config.self, doc["denoising_unet"], name: "denoising_unet", file: path)
        dc.use_temporal_module = true
        let rc = try ConfigLoader.section(UNet2DConditionModel.Config.self, doc["reference_unet"], name: "reference_unet", file: path)
        let me = try ConfigLoader.section(MotionEncoder.Config.self, doc["motion_encoder"], name: "motion_encoder", file: path)

        let dev = try device.map(Device.init(parsing:)) ?? (Torch.cudaIsAvailable ? .cuda(0) : .cpu)
        let dt = try Self.parseDType(dtype, device: dev)
        let side: Int
        switch (size, dc.sample_size) {
        case (let s?, _): side = s
        case (nil, .one(let s)?): side = s
        case (nil, .many(let s)?) where !s.isEmpty: side = s[0]
        default: side = 64
        }
        let steps = self.steps ?? (config == "tiny" ? 5 : 2)
        // Paper-size weights are never initialised (their values do not change the timing).
        let big = (dc.block_out_channels.max() ?? 0) >= 320
        print("LibTorch \(Torch.runtimeVersion), \(Torch.numThreads) threads, \(dev), \(dt); config \(path)")
        print(String(format: "peak RSS at start: %.0f MiB", peakRSSMiB()))

        func build() throws -> (UNet2DConditionModel, UNet3DConditionModel) {
            (try UNet2DConditionModel(rc, withOutputLayers: false), try UNet3DConditionModel(dc))
        }
        let (refUNet, denoiser) = big ? try ParameterInit.uninitialized(build) : try build()
        for m in [refUNet as Module, denoiser] {
            m.eval()
            // Untouched uninitialised pages read as the shared zero page and would not count in
            // the RSS: write them once (zeros time like any other values).
            if big { try Torch.noGrad { for p in m.parameters() { try p.zero_() } } }
            if dt != .float32 { try m.to(dtype: dt) }
            if dev != .cpu { try m.to(device: dev) }
        }
        print(String(format: "reference UNet %.1f M, denoiser %.1f M parameters (%@); peak RSS %.0f MiB",
                     Double(refUNet.parameterCount) / 1e6, Double(denoiser.parameterCount) / 1e6,
                     big ? "uninitialised, zero-filled" : "random", peakRSSMiB()))
        let control = try ReferenceAttentionControl(writer: refUNet, reader: denoiser, fusionBlocks: "full",
                                                    roundBankToFP16: true)
        control.maxKeyframes = max(keyframes, control.maxKeyframes)

        // Inputs: a window of f frames in chunks of 4 at t = 0, 333, 666, 999 (oldest least noisy).
        let f = frames
        let crossDim = dc.cross_attention_dim
        let motionDim = dc.motion_module_kwargs.cross_attention_dim ?? me.out_ch
        let motionTokens = me.latent_dim / me.out_ch
        let levels: [Int64] = [0, 333, 666, 999]
        let perFrame = (0..<f).map { levels[min($0 / 4, levels.count - 1)] }
        let latents = try Tensor.randn([1, dc.in_channels, f, side, side]).to(dev, dt)
        let timesteps = try Tensor(perFrame, shape: [f]).to(dev)
        let clip = try Tensor.randn([1, 1, crossDim]).to(dev, dt)
        let motion = try Tensor.randn([1, f, motionTokens, motionDim]).to(dev, dt)
        let pose = try Tensor.randn([1, dc.block_out_channels[0], f, side, side]).to(dev, dt)
        let refLatent = try Tensor.randn([1, rc.in_channels, side, side]).to(dev, dt)
        let refClip = try Tensor.randn([1, 1, try rc.cross_attention_dim.perBlock(rc.down_block_types.count,
                                                                                 key: "cross_attention_dim")[0]]).to(dev, dt)
        let zero = try Tensor(Array(repeating: Int64(0), count: 1), shape: [1]).to(dev)
        print("window: \(f) frames at t = \(levels.map(String.init).joined(separator: "/")) per chunk of 4, latent \(side)×\(side), "
              + "\(motionTokens) motion tokens × \(motionDim); \(warmup) warm-up + \(steps) timed forwards each")

        func sync() throws { if case .cuda(let i) = dev { try Torch.cudaSynchronize(i) } }
        func measure(_ body: () throws -> Void) throws -> Double {
            for _ in 0..<warmup { try body() }
            try sync()
            return try time {
                for _ in 0..<steps { try body() }
                try sync()
            } / Double(steps)
        }

        try Torch.noGrad {
            // Baseline: the reference UNet pass at t = 0 that writes the bank.
            let baseline = try measure {
                control.clearWriter()
                _ = try refUNet(refLatent, timestep: zero, encoderHiddenStates: refClip)
            }
            try control.update()
            print(String(format: "baseline   reference UNet pass (t = 0, writes the bank): %9.2f ms;  peak RSS %.0f MiB",
                         baseline * 1e3, peakRSSMiB()))

            let plain = try measure {
                _ = try denoiser(latents, timesteps: timesteps, clip: clip, motion: motion, poseCond: pose)
            }
            print(String(format: "denoiser   %d frames, 0 keyframes:  %9.2f ms  (%.1f× baseline, %.1f frames/s);  peak RSS %.0f MiB",
                         f, plain * 1e3, plain / baseline, Double(f) / plain, peakRSSMiB()))

            guard keyframes > 0 else { return }
            for _ in 0..<keyframes {
                control.clearWriter()
                _ = try refUNet(try Tensor.randn([1, rc.in_channels, side, side]).to(dev, dt), timestep: zero,
                                encoderHiddenStates: refClip)
                guard try control.updateKeyframe() else { throw CLIError("keyframe bank refused a keyframe") }
            }
            let withKeyframes = try measure {
                _ = try denoiser(latents, timesteps: timesteps, clip: clip, motion: motion, poseCond: pose)
            }
            print(String(format: "denoiser   %d frames, %d keyframes:  %9.2f ms  (%.1f× baseline, %.2f× without keyframes);  peak RSS %.0f MiB",
                         f, control.keyframeCount, withKeyframes * 1e3, withKeyframes / baseline, withKeyframes / plain,
                         peakRSSMiB()))
        }
        control.detach()
        if dev != .cpu { print("(peak RSS is host memory; GPU memory is not included)") }
    }
}

/// Peak resident set size of this process so far (getrusage; ru_maxrss is in KiB on Linux).
func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024
}

