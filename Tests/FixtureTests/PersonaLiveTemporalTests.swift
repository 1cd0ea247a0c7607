// PersonaLiveTemporalTests.swift — full-size key layouts of PersonaLive's motion / temporal modules
// (the 21 of each a denoising UNet holds) and of the 512² StyleGAN2 discriminator against the
// manifests; LPIPS properties (identity, symmetry, positivity, input gradients) and its weight
// loading from lpips- and torchvision-named safetensors files.
import Foundation
import Testing
import Models
import NN
import Torch

@Suite struct PersonaLiveTemporalTests {
    // MARK: manifests

    /// The modules a full-size SD-1.5 denoising UNet holds under `<stage>.<name>.N`, in the
    /// state-dict order of the reference (down blocks, up blocks, mid block): two per down block,
    /// three per up block, one in the mid block.
    final class StageModules: Module {
        let modules: [(String, VanillaTemporalModule)]

        init(name: String, config: VanillaTemporalModule.Config) throws {
            let down = [320, 640, 1280, 1280], up = [1280, 1280, 640, 320]
            var list: [(String, VanillaTemporalModule)] = []
            for (i, c) in down.enumerated() {
                for j in 0..<2 { list.append(("down_blocks.\(i).\(name).\(j)", try VanillaTemporalModule(config, inChannels: c))) }
            }
            for (i, c) in up.enumerated() {
                for j in 0..<3 { list.append(("up_blocks.\(i).\(name).\(j)", try VanillaTemporalModule(config, inChannels: c))) }
            }
            list.append(("mid_block.\(name).0", try VanillaTemporalModule(config, inChannels: 1280)))
            modules = list
        }

        override func listedChildren() -> [(String, Module)]? { modules.map { ($0.0, $0.1) } }
    }

    @Test("21 temporal modules match personalive_temporal_module.json")
    func temporalModulesManifest() throws {
        let manifest = try Manifest("personalive_temporal_module.json")
        let model = try ParameterInit.uninitialized {
            try StageModules(name: "temporal_modules", config: .personaliveTemporal)
        }
        #expect(model.modules.count == 21)
        manifest.expectMatch(model)
        try manifest.expectTotals(of: model)
    }

    @Test("21 motion modules match the motion_modules keys of the denoising UNet manifest")
    func motionModulesManifest() throws {
        let manifest = try Manifest("personalive_denoising_unet.json")
        let model = try ParameterInit.uninitialized {
            try StageModules(name: "motion_modules", config: .personaliveMotion)
        }
        ManifestComparison(model.stateDict(), with: manifest.entries(containing: ".motion_modules."))
            .expectMatch("motion_modules of \(manifest.file)")
        #expect(model.namedBuffers().isEmpty)  // no positional encoding in the spatial blocks
    }

    @Test("PersonaLive's module configs decode from the reference kwargs, strictly")
    func configDecoding() throws {
        let motion = """
            {"num_attention_heads": 8, "num_transformer_block": 1, "cross_attention_dim": 16,
             "attention_block_types": ["Spatial_Cross", "Spatial_Cross"], "temporal_position_encoding": false,
             "temporal_position_encoding_max_len": 32, "temporal_attention_dim_div": 1}
            """
        #expect(try JSONDecoder().decode(VanillaTemporalModule.Config.self, from: Data(motion.utf8)) == .personaliveMotion)
        let typo = #"{"num_attention_head": 8}"#
        #expect(throws: UnknownConfigKeyError.self) {
            try JSONDecoder().decode(VanillaTemporalModule.Config.self, from: Data(typo.utf8))
        }
        let badType = #"{"attention_block_types": ["Temporal_Crosss"]}"#
        #expect(throws: (any Error).self) {
            try JSONDecoder().decode(VanillaTemporalModule.Config.self, from: Data(badType.utf8))
        }
        #expect(throws: UnknownConfigKeyError.self) {
            try JSONDecoder().decode(StyleGAN2Discriminator.Config.self, from: Data(#"{"img_resolutoin": 256}"#.utf8))
        }
    }

    @Test("A fresh module is the identity (zero-initialised proj_out), on both block types")
    func zeroInitialisedIdentity() throws {
        let hidden = try Tensor.randn([1, 32, 4, 2, 2])
        let tokens = try Tensor.randn([1, 4, 32, 16])
        var motion = VanillaTemporalModule.Config.personaliveMotion
        motion.in_channels = 32
        let m = try VanillaTemporalModule(motion)
        #expect(try m(hidden: hidden, motionTokens: tokens).maxAbsDiff(hidden) == 0)
        let t = try VanillaTemporalModule(.personaliveTemporal, inChannels: 32)
        #expect(try t(hidden: hidden).maxAbsDiff(hidden) == 0)
        #expect(throws: (any Error).self) { try m(hidden: hidden, motionTokens: nil) }
    }

    @Test("512² discriminator matches stylegan2_discriminator_512.json")
    func discriminatorManifest() throws {
        let manifest = try Manifest("stylegan2_discriminator_512.json")
        let d = try ParameterInit.uninitialized { try StyleGAN2Discriminator() }
        manifest.expectMatch(d)
        try manifest.expectTotals(of: d)
    }

    @Test("Discriminator losses: G and D are softplus of the logits; gradients reach the fake image")
    func discriminatorLosses() throws {
        let d = try StyleGAN2Discriminator(.init(img_resolution: 16, temb_channels: 8, channel_base: 64, channel_max: 16))
        let fake = try Tensor.randn([4, 3, 16, 16]).requiresGrad_(true)
        let real = try Tensor.randn([4, 3, 16, 16])
        let t = try Tensor([Int64(999), 666, 333, 0])
        let lf = try d.logits(fake, timesteps: t), lr = try d.logits(real, timesteps: t)
        #expect(lf.shape == [4, 1])
        let g = try d.generatorLoss(fake: fake, timesteps: t)
        #expect(try g.maxAbsDiff(lf.neg().softplus().mean()) < 1e-6)
        let dl = try d.discriminatorLoss(fake: fake, real: real, timesteps: t)
        #expect(try dl.maxAbsDiff((lf.softplus() + lr.neg().softplus()).mean()) < 1e-6)
        try g.backward()
        let grad = try #require(fake.grad)
        #expect(try grad.isfinite().all().item() == 1)
        #expect(try grad.abs().sum().item() > 0)
    }

    // MARK: LPIPS

    /// LPIPS with random VGG weights and non-negative heads (as trained lpips heads are).
    static func randomLPIPS() throws -> LPIPS {
        let m = try LPIPS()
        try Torch.noGrad {
            for lin in m.lins { try lin.weight.copy_(lin.weight.abs()) }
        }
        return m
    }

    static func images(_ seed: UInt64) throws -> Tensor {
        try Tensor.rand([2, 3, 32, 32], generator: Generator(seed: seed)) * 2 - 1
    }

    @Test("LPIPS key names follow the lpips package")
    func lpipsKeys() throws {
        let keys = try LPIPS().stateDict().map(\.0)
        #expect(keys.first == "scaling_layer.shift")
        #expect(keys.contains("net.slice1.0.weight") && keys.contains("net.slice1.2.bias"))
        #expect(keys.contains("net.slice2.5.weight") && keys.contains("net.slice5.28.weight"))
        #expect(keys.filter { $0.hasPrefix("net.") }.count == 26)
        #expect((0..<5).allSatisfy { keys.contains("lin\($0).model.1.weight") })
        #expect(keys.count == 2 + 26 + 5)
    }

    @Test("LPIPS: d(x, x) = 0, symmetric, positive for x ≠ y")
    func lpipsProperties() throws {
        let m = try Self.randomLPIPS()
        let x = try Self.images(1), y = try Self.images(2)
        let same = try m(x, x)
        #expect(same.shape == [2])
        #expect(try same.abs().max().item() == 0)
        let dxy = try m(x, y), dyx = try m(y, x)
        let scale = max(1, try dxy.abs().max().item())
        #expect(try dxy.maxAbsDiff(dyx) <= 1e-6 * scale)
        #expect(try dxy.min().item() > 0)
        // normalize=True reads [0, 1] images.
        #expect(try m((x + 1) / 2, (y + 1) / 2, normalize: true).maxAbsDiff(dxy) < 1e-5)
    }

    @Test("LPIPS gradients reach the input, finite and non-zero")
    func lpipsGradients() throws {
        let m = try Self.randomLPIPS()
        let x = try Self.images(3).requiresGrad_(true)
        let y = try Self.images(4)
        try m(x, y).sum().backward()
        let grad = try #require(x.grad)
        #expect(grad.shape == x.shape)
        #expect(try grad.isfinite().all().item() == 1)
        #expect(try grad.abs().sum().item() > 0)
        #expect(m.trainableParameters().isEmpty)
    }

    @Test("LPIPS weights round-trip through safetensors (lpips names, and torchvision + lin files)")
    func lpipsLoading() throws {
        let m = try Self.randomLPIPS()
        let x = try Self.images(5), y = try Self.images(6)
        let want = try m(x, y)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lpips-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        let full = dir.appendingPathComponent("lpips_vgg.safetensors").path
        try SafeTensors.write(m.stateDict(), to: full)
        let loaded = try LPIPS(weights: [full])
        #expect(try loaded(x, y).maxAbsDiff(want) == 0)

        // torchvision's features.N.* for the VGG, the lpips package's lin-only file for the heads.
        let vgg = m.net.stateDict().map { key, t -> (String, Tensor) in
            let parts = key.split(separator: ".", maxSplits: 2)  // sliceK, N, weight|bias
            return ("features.\(parts[1]).\(parts[2])", t)
        }
        let vggPath = dir.appendingPathComponent("vgg16.safetensors").path
        let linPath = dir.appendingPathComponent("vgg_lin.safetensors").path
        try SafeTensors.write(vgg + [("classifier.0.weight", try Tensor.zeros([2, 2]))], to: vggPath)
        try SafeTensors.write(m.stateDict().filter { $0.0.hasPrefix("lin") }, to: linPath)
        let split = try LPIPS(weights: [vggPath, linPath])
        #expect(try split(x, y).maxAbsDiff(want) == 0)

        // A missing head is an error naming the key.
        let partial = dir.appendingPathComponent("partial.safetensors").path
        try SafeTensors.write(m.stateDict().filter { $0.0 != "lin4.model.1.weight" }, to: partial)
        #expect(throws: StateDictError.self) { try LPIPS(weights: [partial]) }
    }
}
