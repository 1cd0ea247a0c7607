// BenchUNet.swift — `personalive bench unet`: UNet2DConditionModel forward and forward+backward
// milliseconds per step, each printed against one ResnetBlock2D pass at the UNet's first-stage
// size measured in the same run (a baseline that moves with the machine, so ratios compare).
import ArgumentParser
import Foundation
import Models
import NN
import Torch

struct BenchUNetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unet",
        abstract: "UNet2DConditionModel forward and forward+backward time per step (randomly initialised weights).")

    @Option(help: "tiny (the fixture UNet), sd15 (the SD-1.5 image-variations UNet) or a diffusers config.json path.")
    var config: String = "tiny"

    @Option(help: "Batch size.") var batch: Int = 1
    @Option(help: "Latent height and width (default: the config's sample_size).") var size: Int?
    @Option(help: "Timed steps of each kind (default: 10 for tiny, 2 otherwise).") var steps: Int?
    @Option(help: "Untimed warm-up steps (default: 2 for tiny, 0 otherwise: a full-size step dwarfs first-call costs).")
    var warmup: Int?
    @Option(help: "Tokens of encoder_hidden_states (1 = one CLIP image embedding).") var tokens: Int = 1
    @Flag(help: "Skip the forward+backward measurement.") var forwardOnly = false
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard batch > 0, steps ?? 1 > 0, warmup ?? 0 >= 0, tokens > 0 else {
            throw ValidationError("--batch, --steps and --tokens must be positive and --warmup not negative")
        }
        if let size, size <= 0 { throw ValidationError("--size must be positive") }
    }

    /// The fixture UNet (636 412 parameters at 16×16); `bench compare` times it against diffusers'.
    static var tinyConfig: UNet2DConditionModel.Config {
        var c = UNet2DConditionModel.Config()
        c.sample_size = .one(16)
        c.down_block_types = ["CrossAttnDownBlock2D", "DownBlock2D"]
        c.up_block_types = ["UpBlock2D", "CrossAttnUpBlock2D"]
        c.block_out_channels = [32, 40]
        c.cross_attention_dim = .one(32)
        c.norm_num_groups = 8
        return c
    }

    func resolveConfig() throws -> UNet2DConditionModel.Config {
        switch config {
        case "sd15": return .sd15ImageVariations
        case "tiny": return Self.tinyConfig
        default:
            let url = URL(fileURLWithPath: config)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw CLIError("--config: '\(config)' is neither tiny, sd15 nor an existing config.json")
            }
            return try JSONDecoder().decode(UNet2DConditionModel.Config.self, from: Data(contentsOf: url))
        }
    }

    func run() throws {
        _ = try global.setUp(label: "bench")
        let c = try resolveConfig()
        let side: Int
        switch (size, c.sample_size) {
        case (let s?, _): side = s
        case (nil, .one(let s)?): side = s
        case (nil, .many(let s)?) where !s.isEmpty: side = s[0]
        default: side = 64
        }
        let steps = self.steps ?? (config == "tiny" ? 10 : 2)
        let warmup = self.warmup ?? (config == "tiny" ? 2 : 0)
        let crossDim = try c.cross_attention_dim.perBlock(c.down_block_types.count, key: "cross_attention_dim")[0]
        print("LibTorch \(Torch.runtimeVersion), \(Torch.numThreads) threads, CPU")

        let buildStart = DispatchTime.now().uptimeNanoseconds
        let unet = try UNet2DConditionModel(c)
        let buildS = Double(DispatchTime.now().uptimeNanoseconds - buildStart) / 1e9
        print(String(format: "config %@: %d parameters (%.1f M), built in %.2f s; batch %d, latent %d×%d, %d context token(s); %d warm-up + %d timed steps",
                     config, unet.parameterCount, Double(unet.parameterCount) / 1e6, buildS, batch, side, side, tokens,
                     warmup, steps))

        let sample = try Tensor.randn([batch, c.in_channels, side, side])
        let context = try Tensor.randn([batch, tokens, crossDim])
        let timesteps = try Tensor.randint(0, 1000, [batch])

        // Baseline: one resnet of the first stage at the same resolution and batch.
        let ch = c.block_out_channels[0]
        let resnet = try ResnetBlock2D(.init(in_channels: ch, out_channels: ch, temb_channels: c.timeEmbedDim,
                                             groups: c.norm_num_groups, eps: c.norm_eps))
        let rx = try Tensor.randn([batch, ch, side, side]), rt = try Tensor.randn([batch, c.timeEmbedDim])
        let baseline = try Torch.noGrad {
            try measure(warmup: max(warmup, 1), steps: max(steps, 5)) { _ = try resnet(rx, temb: rt) }
        }

        unet.eval()
        let forward = try Torch.noGrad {
            try measure(warmup: warmup, steps: steps) {
                _ = try unet(sample, timestep: timesteps, encoderHiddenStates: context)
            }
        }
        print(String(format: "baseline  ResnetBlock2D(%d ch) forward: %9.2f ms", ch, baseline * 1e3))
        print(String(format: "forward          UNet: %9.2f ms/step  (%.0f× baseline)", forward * 1e3, forward / baseline))

        guard !forwardOnly else { return }
        unet.train()
        let params = unet.parameters()
        let backward = try measure(warmup: warmup, steps: steps) {
            let out = try unet(sample, timestep: timesteps, encoderHiddenStates: context)
            try out.square().mean().backward()
            for p in params { try p.setGrad(nil) }
        }
        print(String(format: "forward+backward UNet: %9.2f ms/step  (%.0f× baseline, %.2f× forward)",
                     backward * 1e3, backward / baseline, backward / forward))
    }

    /// Mean seconds per call of `body` over `steps` calls after `warmup` untimed ones.
    func measure(warmup: Int, steps: Int, _ body: () throws -> Void) throws -> Double {
        for _ in 0..<warmup { try body() }
        return try time { for _ in 0..<steps { try body() } } / Double(steps)
    }
}
