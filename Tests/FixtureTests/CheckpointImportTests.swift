// CheckpointImportTests.swift — `checkpoint import` round trips on small generated checkpoints:
// diffusers folders (fp16, legacy VAE attention names, sharded), .pth files, CLIP with the old
// position_ids buffer, and failures that must name the key and leave nothing behind.
import Foundation
import Testing
import Models
import NN
import Torch

@Suite(.serialized) struct CheckpointImportTests {
    static var tinyVAEConfig: AutoencoderKL.Config {
        var c = AutoencoderKL.Config()
        c.down_block_types = ["DownEncoderBlock2D", "DownEncoderBlock2D"]
        c.up_block_types = ["UpDecoderBlock2D", "UpDecoderBlock2D"]
        c.block_out_channels = [32, 64]
        c.layers_per_block = 1
        c.norm_num_groups = 8
        return c
    }

    static let tinyVAEConfigJSON = """
        {"_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0", "in_channels": 3, "out_channels": 3,
         "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
         "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"], "block_out_channels": [32, 64],
         "layers_per_block": 1, "act_fn": "silu", "latent_channels": 4, "norm_num_groups": 8, "sample_size": 32}
        """

    /// A fresh temporary folder, removed at the end of the test.
    final class TempDir {
        let url: URL
        init() throws {
            url = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-import-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(at: url) }
        func path(_ name: String) -> String { url.appendingPathComponent(name).path }
        func folder(_ name: String) throws -> String {
            let p = path(name)
            try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
            return p
        }
    }

    /// The tiny VAE's state dict with legacy attention names, in `dtype`.
    func legacyVAEState(_ dtype: DType) throws -> (current: [(String, Tensor)], legacy: [(String, Tensor)]) {
        try Torch.manualSeed(11)
        let vae = try AutoencoderKL(Self.tinyVAEConfig)
        let current = try vae.stateDict().map { ($0.0, try $0.1.detach().to(dtype)) }
        let legacyOf = Dictionary(uniqueKeysWithValues: AutoencoderKL.legacyAttentionNames.map { ($0.new, $0.old) })
        let legacy = current.map { k, t -> (String, Tensor) in
            for (new, old) in legacyOf where k.contains(".attentions.0.\(new).") {
                return (k.replacingOccurrences(of: ".attentions.0.\(new).", with: ".attentions.0.\(old)."), t)
            }
            return (k, t)
        }
        return (current, legacy)
    }

    /// Loads DIR/vae.safetensors strictly into a VAE built from DIR/config.json; returns its state.
    func reload(_ dir: String, file: String = "vae.safetensors") throws -> [String: Tensor] {
        let cfg = try JSONDecoder().decode(AutoencoderKL.Config.self,
                                           from: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json")))
        #expect(cfg == Self.tinyVAEConfig)
        let vae = try ParameterInit.uninitialized { try AutoencoderKL(cfg) }
        try vae.load(from: SafeTensorsSource(path: dir + "/" + file), strict: true)
        return Dictionary(uniqueKeysWithValues: vae.stateDict())
    }

    func expectEqual(_ got: [String: Tensor], _ want: [(String, Tensor)]) throws {
        #expect(got.count == want.count)
        for (k, t) in want {
            let g = try #require(got[k], "missing \(k)")
            #expect(try g.maxAbsDiff(t) == 0, "\(k) differs")
        }
    }

    @Test("CheckpointImport: fp16 diffusers folder with legacy attention names round-trips")
    func fp16LegacyFolder() throws {
        let tmp = try TempDir()
        let src = try tmp.folder("vae-src")
        let (current, legacy) = try legacyVAEState(.float16)
        #expect(legacy.contains { $0.0.hasSuffix("attentions.0.query.weight") })
        try SafeTensors.write(legacy, to: src + "/diffusion_pytorch_model.safetensors")
        try Self.tinyVAEConfigJSON.write(toFile: src + "/config.json", atomically: true, encoding: .utf8)

        let out = tmp.path("vae-fp32")
        let r = try CheckpointImporter().run(source: src, outputDirectory: out)
        #expect(r.kind == .vae)
        #expect(r.outputDType == .float32)
        #expect(r.sourceDTypes == [.float16: legacy.count])
        #expect(r.renamed.count == 16)  // 2 mid-block attentions × 4 projections × weight/bias
        let written = try SafeTensorsFile(path: out + "/vae.safetensors")
        #expect(written.keys.allSatisfy { written.entry($0)?.dtype == .float32 })
        #expect(!written.keys.contains { $0.contains(".query.") || $0.contains(".proj_attn.") })
        try expectEqual(try reload(out), try current.map { ($0.0, try $0.1.to(.float32)) })

        // Written back in the source dtype: the same fp16 values, current names.
        let outHalf = tmp.path("vae-fp16")
        let r2 = try CheckpointImporter(outputDType: .source, name: "vae_half").run(source: src, outputDirectory: outHalf)
        #expect(r2.outputDType == .float16)
        let half = try SafeTensorsFile(path: outHalf + "/vae_half.safetensors")
        #expect(half.keys.allSatisfy { half.entry($0)?.dtype == .float16 })
        for (k, t) in current { #expect(try half.tensor(k).maxAbsDiff(t) == 0, "\(k)") }

        // Nothing but the two output folders is left beside them.
        let listing = try FileManager.default.contentsOfDirectory(atPath: tmp.url.path).sorted()
        #expect(listing == ["vae-fp16", "vae-fp32", "vae-src"])
    }

    @Test("CheckpointImport: a .pth state dict (bf16) with config.json beside it")
    func pthFile() throws {
        let tmp = try TempDir()
        let src = try tmp.folder("pth")
        let (current, legacy) = try legacyVAEState(.bfloat16)
        try Pth.save(legacy, to: src + "/vae.pth")
        try Self.tinyVAEConfigJSON.write(toFile: src + "/config.json", atomically: true, encoding: .utf8)
        let out = tmp.path("out")
        let r = try CheckpointImporter(kind: .vae).run(source: src + "/vae.pth", outputDirectory: out)
        #expect(r.sourceDTypes == [.bfloat16: legacy.count])
        try expectEqual(try reload(out), try current.map { ($0.0, try $0.1.to(.float32)) })
    }

    @Test("CheckpointImport: sharded safetensors folder (index.json)")
    func shardedFolder() throws {
        let tmp = try TempDir()
        let src = try tmp.folder("sharded")
        let (current, _) = try legacyVAEState(.float32)
        let half = current.count / 2
        let shards = [Array(current[..<half]), Array(current[half...])]
        var weightMap: [String: String] = [:]
        for (i, shard) in shards.enumerated() {
            let name = "diffusion_pytorch_model-0000\(i + 1)-of-00002.safetensors"
            try SafeTensors.write(shard, to: src + "/" + name)
            for (k, _) in shard { weightMap[k] = name }
        }
        let index: [String: Any] = ["metadata": ["total_size": 0], "weight_map": weightMap]
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: src + "/diffusion_pytorch_model.safetensors.index.json"))
        try Self.tinyVAEConfigJSON.write(toFile: src + "/config.json", atomically: true, encoding: .utf8)
        let out = tmp.path("out")
        _ = try CheckpointImporter().run(source: src, outputDirectory: out)
        try expectEqual(try reload(out), current)
    }

    @Test("CheckpointImport: a wrong shape names the key; nothing is written")
    func wrongShape() throws {
        let tmp = try TempDir()
        let src = try tmp.folder("bad")
        var (current, _) = try legacyVAEState(.float32)
        let victim = "decoder.conv_out.weight"
        let i = try #require(current.firstIndex { $0.0 == victim })
        current[i] = (victim, try Tensor.zeros([3, 32, 1, 1]))
        current.removeAll { $0.0 == "quant_conv.bias" }
        current.append(("decoder.extra.weight", try Tensor.zeros([2])))
        try SafeTensors.write(current, to: src + "/diffusion_pytorch_model.safetensors")
        try Self.tinyVAEConfigJSON.write(toFile: src + "/config.json", atomically: true, encoding: .utf8)
        let out = tmp.path("out")
        do {
            _ = try CheckpointImporter().run(source: src, outputDirectory: out)
            Issue.record("a mis-shaped checkpoint was accepted")
        } catch {
            let msg = "\(error)"
            #expect(msg.contains(victim) && msg.contains("[3, 32, 3, 3]") && msg.contains("[3, 32, 1, 1]"), "\(msg)")
            #expect(msg.contains("quant_conv.bias"), "every problem key is reported: \(msg)")
            #expect(msg.contains("decoder.extra.weight"), "\(msg)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.url.path) == ["bad"])
    }

    @Test("CheckpointImport: unknown config keys and existing outputs are refused")
    func refusals() throws {
        let tmp = try TempDir()
        let src = try tmp.folder("src")
        let (current, _) = try legacyVAEState(.float32)
        try SafeTensors.write(current, to: src + "/diffusion_pytorch_model.safetensors")
        try #"{"_class_name": "AutoencoderKL", "latent_chanels": 4}"#.write(toFile: src + "/config.json", atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try CheckpointImporter().run(source: src, outputDirectory: tmp.path("o1")) }
        do {
            _ = try CheckpointImporter().run(source: src, outputDirectory: tmp.path("o1"))
        } catch {
            #expect("\(error)".contains("latent_chanels"))
        }
        try Self.tinyVAEConfigJSON.write(toFile: src + "/config.json", atomically: true, encoding: .utf8)
        let existing = try tmp.folder("exists")
        try "keep".write(toFile: existing + "/file.txt", atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try CheckpointImporter().run(source: src, outputDirectory: existing) }
        #expect(FileManager.default.fileExists(atPath: existing + "/file.txt"))
        _ = try CheckpointImporter(overwrite: true).run(source: src, outputDirectory: existing)
        #expect(!FileManager.default.fileExists(atPath: existing + "/file.txt"))
        try expectEqual(try reload(existing), current)
    }

    @Test("CheckpointImport: CLIP vision folder with the legacy position_ids buffer")
    func clipFolder() throws {
        let tmp = try TempDir()
        let src = try tmp.folder("clip")
        var cfg = CLIPVisionModelWithProjection.Config()
        cfg.hidden_size = 32
        cfg.intermediate_size = 64
        cfg.projection_dim = 16
        cfg.num_hidden_layers = 2
        cfg.num_attention_heads = 4
        cfg.image_size = 32
        cfg.patch_size = 8
        try Torch.manualSeed(5)
        let clip = try CLIPVisionModelWithProjection(cfg)
        var state = try clip.stateDict().map { ($0.0, try $0.1.detach().to(.float16)) }
        state.append(("vision_model.embeddings.position_ids", try Tensor.arange(17).view([1, 17])))
        try SafeTensors.write(state, to: src + "/model.safetensors")
        let config = """
            {"architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model",
             "hidden_size": 32, "intermediate_size": 64, "projection_dim": 16, "num_hidden_layers": 2,
             "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "hidden_act": "quick_gelu",
             "dropout": 0.0, "attention_dropout": 0.0, "torch_dtype": "float16", "transformers_version": "4.25.0.dev0"}
            """
        try config.write(toFile: src + "/config.json", atomically: true, encoding: .utf8)
        let out = tmp.path("out")
        let r = try CheckpointImporter().run(source: src, outputDirectory: out)
        #expect(r.kind == .clip)
        #expect(r.ignored == ["vision_model.embeddings.position_ids"])
        let back = try CLIPVisionModelWithProjection.fromPretrained(out)
        #expect(back.config == cfg)
        let got = Dictionary(uniqueKeysWithValues: back.stateDict())
        #expect(got.count == state.count - 1)
        for (k, t) in state where k != "vision_model.embeddings.position_ids" {
            #expect(try got[k]!.maxAbsDiff(t.to(.float32)) == 0, "\(k)")
        }
    }

    @Test("CheckpointImport: UNet folder (auto kind), with and without output layers")
    func unetFolder() throws {
        let tmp = try TempDir()
        let caseDir = TestPaths.fixtures.appendingPathComponent("diffusers/unet2d_condition_tiny")
        let caseJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: caseDir.appendingPathComponent("case.json"))) as? [String: Any]
        var config = try #require(caseJSON?["config"] as? [String: Any])
        config["_class_name"] = "UNet2DConditionModel"
        let weights = try SafeTensorsFile(path: caseDir.appendingPathComponent("weights.safetensors").path)
        let all = try weights.keys.map { ($0, try weights.tensor($0)) }

        for withOutput in [true, false] {
            let src = try tmp.folder("unet-\(withOutput)")
            let state = withOutput ? all : all.filter { !$0.0.hasPrefix("conv_out.") && !$0.0.hasPrefix("conv_norm_out.") }
            try SafeTensors.write(state.map { ($0.0, try $0.1.to(.float16)) }, to: src + "/diffusion_pytorch_model.safetensors")
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: src + "/config.json"))
            let out = tmp.path("out-\(withOutput)")
            let r = try CheckpointImporter(outputDType: .source).run(source: src, outputDirectory: out)
            #expect(r.kind == .unet)
            #expect(r.outputDType == .float16)
            #expect(r.tensorCount == state.count)
            let written = try SafeTensorsFile(path: out + "/unet.safetensors")
            #expect(written.keys.sorted() == state.map(\.0).sorted())
            for (k, t) in state { #expect(try written.tensor(k).maxAbsDiff(t.to(.float16)) == 0, "\(k)") }
        }
        // A config naming another class than --kind is refused with both names.
        do {
            _ = try CheckpointImporter(kind: .vae).run(source: tmp.path("unet-true"), outputDirectory: tmp.path("x"))
            Issue.record("a UNet config was accepted as a VAE")
        } catch {
            #expect("\(error)".contains("UNet2DConditionModel") && "\(error)".contains("AutoencoderKL"))
        }
    }
}
