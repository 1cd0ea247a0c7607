// PersonaLiveCheckpointTests.swift — `checkpoint import|export` for PersonaLive's modules on small
// stand-ins generated here for the tiny configs: each released file name (.pth written with
// Pth.save, some under a wrapper key) imported through CheckpointImporter (what the CLI calls) into
// one model folder, reloaded strictly, values equal; the documented allow-list (stage-1/2 denoiser
// without temporal modules, AnimateDiff-style temporal files, LivePortrait's motion extractor
// without idx_tensor, the FFHQ discriminator without its timestep embedding, the reference UNet
// with SD's output layers); every bad key named; export → .pth read back equal, and loaded by
// PyTorch with load_state_dict(strict=True) when $PERSONALIVE_PYTHON (default .venv/bin/python)
// has torch and safetensors.
import Foundation
import Testing
import Models
import NN
import Torch

@Suite(.serialized) struct PersonaLiveCheckpointTests {
    /// Configs/tiny/model.yaml's module sections (as JSON), plus Configs/tiny/motion_extractor.yaml's
    /// motion extractor and the tiny discriminator of fixtures/personalive/stylegan2_discriminator.
    static let tinyModelJSON = """
        {
          "denoising_unet": {
            "sample_size": 8, "in_channels": 4, "out_channels": 4, "flip_sin_to_cos": true, "freq_shift": 0,
            "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"], "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"],
            "mid_block_type": "UNetMidBlock3DCrossAttn", "block_out_channels": [32, 64], "layers_per_block": 1,
            "norm_num_groups": 8, "norm_eps": 1e-5, "cross_attention_dim": 32, "attention_head_dim": 4, "act_fn": "silu",
            "downsample_padding": 1, "mid_block_scale_factor": 1, "use_inflated_groupnorm": true,
            "unet_use_cross_frame_attention": false, "unet_use_temporal_attention": false, "use_motion_module": true,
            "motion_module_resolutions": [1, 2, 4, 8], "motion_module_mid_block": true, "motion_module_decoder_only": false,
            "motion_module_type": "Vanilla",
            "motion_module_kwargs": {"num_attention_heads": 8, "num_transformer_block": 1, "cross_attention_dim": 16,
              "attention_block_types": ["Spatial_Cross", "Spatial_Cross"], "temporal_position_encoding": false,
              "temporal_position_encoding_max_len": 32, "temporal_attention_dim_div": 1},
            "use_temporal_module": false, "temporal_module_type": "Vanilla",
            "temporal_module_kwargs": {"num_attention_heads": 8, "num_transformer_block": 1,
              "attention_block_types": ["Temporal_Self", "Temporal_Self"], "temporal_position_encoding": true,
              "temporal_position_encoding_max_len": 32, "temporal_attention_dim_div": 1}
          },
          "reference_unet": {
            "sample_size": 8, "in_channels": 4, "out_channels": 4, "flip_sin_to_cos": true, "freq_shift": 0,
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8, "norm_eps": 1e-5,
            "cross_attention_dim": 32, "attention_head_dim": 4, "act_fn": "silu", "downsample_padding": 1,
            "mid_block_scale_factor": 1
          },
          "pose_guider": {"conditioning_embedding_channels": 32, "conditioning_channels": 3, "block_out_channels": [8, 16, 16, 32]},
          "motion_encoder": {"out_ch": 16, "latent_dim": 512, "image_size": 64, "base_channels": 16, "hourglass_depth": 2,
            "num_landmarks": 16, "attention_heads": 2, "attention_head_dim": 16, "norm_num_groups": 8},
          "motion_extractor": {"num_kp": 21, "num_bins": 66, "depths": [1, 1, 2, 1], "dims": [24, 48, 96, 192]},
          "discriminator": {"c_dim": 0, "img_resolution": 32, "img_channels": 3, "temb_channels": 32, "architecture": "resnet",
            "channel_base": 256, "channel_max": 64, "num_fp16_res": 0, "conv_clamp": null}
        }
        """

    static var tinyModel: JSONValue {
        get throws { try JSONDecoder().decode(JSONValue.self, from: Data(tinyModelJSON.utf8)) }
    }

    final class TempDir {
        let url: URL
        init() throws {
            url = FileManager.default.temporaryDirectory.appendingPathComponent("pl-ckpt-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(at: url) }
        func path(_ name: String) -> String { url.appendingPathComponent(name).path }
        func folder(_ name: String) throws -> String {
            let p = path(name)
            try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
            return p
        }
        func listing(_ name: String = "") throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: name.isEmpty ? url.path : path(name)).sorted()
        }
    }

    // MARK: stand-ins

    /// The tiny module of `kind` built by its own constructor (not through the importer), with every
    /// tensor filled with distinct values; for temporal_module the denoiser's temporal subset.
    static func standIn(_ kind: CheckpointKind, temporal: Bool = true, seed: UInt64 = 5) throws -> [(String, Tensor)] {
        try Torch.manualSeed(seed)
        let model = try tinyModel
        func section<T: Decodable>(_ name: String, _ t: T.Type) throws -> T { try #require(model[name]).decode(T.self) }
        let module: Module
        switch kind {
        case .denoisingUNet, .temporalModule:
            var c = try section("denoising_unet", UNet3DConditionModel.Config.self)
            c.use_temporal_module = temporal || kind == .temporalModule
            let unet = try UNet3DConditionModel(c)
            module = kind == .temporalModule ? unet.temporalModuleSubset : unet
        case .referenceUNet:
            module = try UNet2DConditionModel(try section("reference_unet", UNet2DConditionModel.Config.self), withOutputLayers: false)
        case .poseGuider: module = try PoseGuider(try section("pose_guider", PoseGuider.Config.self))
        case .motionEncoder: module = try MotionEncoder(try section("motion_encoder", MotionEncoder.Config.self))
        case .motionExtractor: module = try MotionExtractor(try section("motion_extractor", MotionExtractor.Config.self))
        case .discriminator: module = try StyleGAN2Discriminator(try section("discriminator", StyleGAN2Discriminator.Config.self))
        default: throw TorchError("not a PersonaLive kind")
        }
        return try module.stateDict().map { k, t in
            let v = t.dtype.isFloatingPoint ? try Tensor.randn(t.shape, dtype: t.dtype) : try Tensor.full(t.shape, 7, dtype: t.dtype)
            return (k, v)
        }
    }

    /// Builds the module described by `<dir>/<name>.json` and loads `<dir>/<name>.safetensors` strictly.
    static func reload(_ dir: String, _ kind: CheckpointKind, name: String? = nil) throws -> [(String, Tensor)] {
        let base = (dir as NSString).appendingPathComponent(name ?? kind.rawValue)
        let config = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: base + ".json")))
        #expect(config["_module"]?.string == kind.rawValue)
        let built = try PersonaLiveCheckpoints.build(kind, config: config)
        try built.module.load(from: SafeTensorsSource(path: base + ".safetensors"), strict: true)
        return built.module.stateDict()
    }

    static func expectEqual(_ got: [(String, Tensor)], _ want: [(String, Tensor)], _ label: String,
                            skipping skip: Set<String> = []) throws {
        let g = Dictionary(uniqueKeysWithValues: got)
        #expect(Set(g.keys) == Set(want.map(\.0)), "\(label): key sets differ")
        for (k, t) in want where !skip.contains(k) {
            guard let x = g[k] else { continue }
            #expect(x.shape == t.shape, "\(label): \(k) shape")
            #expect(try x.maxAbsDiff(t) == 0, "\(label): \(k) differs")
        }
    }

    static func writeTinyConfig(_ tmp: TempDir) throws -> String {
        let p = tmp.path("model.json")
        try tinyModelJSON.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    // MARK: tests

    @Test("PersonaLiveCheckpoint: kinds from the released and training file names")
    func fileNames() {
        for (name, kind) in CheckpointKind.releasedFileNames {
            #expect(CheckpointKind(personaLiveFileName: "/x/pretrained_weights/personalive/\(name)") == kind, "\(name)")
        }
        #expect(CheckpointKind.releasedFileNames.count == 7)
        #expect(CheckpointKind(personaLiveFileName: "denoising_unet-12000.pth") == .denoisingUNet)
        #expect(CheckpointKind(personaLiveFileName: "xnemo_temporal_module.pth") == .temporalModule)
        #expect(CheckpointKind(personaLiveFileName: "checkpoint-600/discriminator.safetensors") == .discriminator)
        #expect(CheckpointKind(personaLiveFileName: "motion_encoder.safetensors") == .motionEncoder)
        #expect(CheckpointKind(personaLiveFileName: "unet.safetensors") == nil)
        #expect(CheckpointKind(personaLiveFileName: "diffusion_pytorch_model.bin") == nil)
        #expect(CheckpointKind(rawValue: "temporal_module") == .temporalModule)
        for k in CheckpointKind.personaLiveKinds { #expect(PersonaLiveCheckpoints.allowList[k] != nil, "\(k)") }
    }

    @Test("PersonaLiveCheckpoint: model-config sections; the default is the paper size of the manifests")
    func sectionsAndPaperSize() throws {
        let tiny = try Self.tinyModel
        let guider = try #require(PersonaLiveCheckpoints.section(for: .poseGuider, in: tiny))
        #expect(guider["conditioning_embedding_channels"]?.int == 32)
        #expect(PersonaLiveCheckpoints.section(for: .temporalModule, in: tiny) == PersonaLiveCheckpoints.section(for: .denoisingUNet, in: tiny))
        // A training config's model: mapping; a model.yaml without the section; one module's section.
        let training = JSONValue.object(["stage": .string("motion_extractor"), "model": .object(["motion_extractor": tiny["motion_extractor"]!])])
        #expect(PersonaLiveCheckpoints.section(for: .motionExtractor, in: training)?["dims"] == tiny["motion_extractor"]?["dims"])
        #expect(PersonaLiveCheckpoints.section(for: .discriminator, in: .object(["pose_guider": guider])) == nil)
        let marked = JSONValue.object(["_module": .string("pose_guider"), "block_out_channels": .array([.number(4)])])
        #expect(PersonaLiveCheckpoints.section(for: .poseGuider, in: marked) == .object(["block_out_channels": .array([.number(4)])]))

        let manifests = TestPaths.fixtures.appendingPathComponent("manifests")
        try #require(FileManager.default.fileExists(atPath: manifests.path), "no \(manifests.path) (set PERSONALIVE_FIXTURES)")
        let files: [(CheckpointKind, String)] = [
            (.denoisingUNet, "personalive_denoising_unet"), (.referenceUNet, "personalive_reference_unet"),
            (.poseGuider, "personalive_pose_guider"), (.motionEncoder, "personalive_motion_encoder"),
            (.motionExtractor, "personalive_motion_extractor"), (.temporalModule, "personalive_temporal_module"),
            (.discriminator, "stylegan2_discriminator_512"),
        ]
        for (kind, name) in files {
            let json = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: manifests.appendingPathComponent(name + ".json")))
            let want = try #require(json["keys"]?.array).map { entry -> String in
                let a = entry.array ?? []
                return "\(a.first?.string ?? "?") \((a.dropFirst().first?.array ?? []).compactMap(\.int))"
            }
            let built = try PersonaLiveCheckpoints.build(kind, config: nil)
            let got = built.module.stateDict().map { "\($0.0) \($0.1.shape)" }
            let firstDifference = zip(got, want).first { $0.0 != $0.1 }.map { "\($0.0) ≠ \($0.1)" } ?? "-"
            #expect(got == want, "\(kind): \(got.count) keys vs the manifest's \(want.count); first difference: \(firstDifference)")
        }
    }

    @Test("PersonaLiveCheckpoint: the seven files import into one model folder and reload strictly, values equal")
    func importEveryFile() throws {
        let tmp = try TempDir()
        let cfg = try Self.writeTinyConfig(tmp)
        let src = try tmp.folder("personalive")
        var originals: [CheckpointKind: [(String, Tensor)]] = [:]
        for (name, kind) in CheckpointKind.releasedFileNames {
            let state = try Self.standIn(kind)
            originals[kind] = state
            // Wrappers where checkpoints have them: a training script's {"state_dict": …}, D under "d".
            let prefix = kind == .poseGuider ? "state_dict." : kind == .discriminator ? "d." : ""
            try Pth.save(state.map { (prefix + $0.0, $0.1) }, to: src + "/" + name)
        }
        let model = tmp.path("model")
        for (name, kind) in CheckpointKind.releasedFileNames {
            // What `personalive checkpoint import FILE --out DIR --config model.json` runs.
            let r = try CheckpointImporter(configPath: cfg).run(source: src + "/" + name, outputDirectory: model)
            #expect(r.kind == kind)
            #expect(r.weightsFile == model + "/\(kind.rawValue).safetensors")
            #expect(r.configFile == model + "/\(kind.rawValue).json")
            #expect(r.tensorCount == originals[kind]!.count, "\(kind)")
            #expect(!r.usedDefaultConfig)
            #expect(r.outputDType == .float32)
        }
        #expect(try tmp.listing("model") == CheckpointKind.releasedFileNames.flatMap { ["\($0.1.rawValue).json", "\($0.1.rawValue).safetensors"] }.sorted())
        #expect(try tmp.listing() == ["model", "model.json", "personalive"], "no temporary folder is left")
        for (kind, state) in originals {
            try Self.expectEqual(try Self.reload(model, kind), state, kind.rawValue)
            // The written file holds exactly the module's keys, in state_dict order.
            let file = try SafeTensorsFile(path: model + "/\(kind.rawValue).safetensors")
            #expect(Set(file.keys) == Set(state.map(\.0)), "\(kind)")
        }
        // The temporal file is the temporal_modules subset of the denoiser, under the denoiser's config.
        let temporalKeys = try SafeTensorsFile(path: model + "/temporal_module.safetensors").keys
        #expect(temporalKeys.allSatisfy { $0.contains(".temporal_modules.") })
        let denoiserKeys = try SafeTensorsFile(path: model + "/denoising_unet.safetensors").keys
        #expect(Set(temporalKeys) == Set(denoiserKeys.filter { $0.contains("temporal_modules") }))
        let tcfg = try JSONDecoder().decode(UNet3DConditionModel.Config.self,
                                            from: Data(contentsOf: URL(fileURLWithPath: model + "/temporal_module.json")))
        #expect(tcfg.use_temporal_module && tcfg.block_out_channels == [32, 64])
        // int64 BatchNorm counters stay int64.
        let me = try SafeTensorsFile(path: model + "/motion_encoder.safetensors")
        #expect(me.keys.filter { $0.hasSuffix("num_batches_tracked") }.allSatisfy { me.entry($0)?.dtype == .int64 })
        #expect(me.keys.contains { $0.hasSuffix("num_batches_tracked") })
    }

    @Test("PersonaLiveCheckpoint: a stage-1/2 denoiser (no temporal modules) and the model.yaml defaults")
    func denoiserWithoutTemporal() throws {
        let tmp = try TempDir()
        let state = try Self.standIn(.denoisingUNet, temporal: false)
        #expect(!state.contains { $0.0.contains("temporal_modules") })
        try Pth.save(state, to: tmp.path("denoising_unet-600.pth"))
        let importer = PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel)
        let rep = try importer.importCheckpoint(source: tmp.path("denoising_unet-600.pth"), outputDirectory: tmp.path("m"))
        #expect(rep.result.kind == .denoisingUNet)
        #expect(rep.notes.isEmpty, "the tiny config already says use_temporal_module false: \(rep.notes)")
        let cfg = try JSONDecoder().decode(UNet3DConditionModel.Config.self,
                                           from: Data(contentsOf: URL(fileURLWithPath: tmp.path("m/denoising_unet.json"))))
        #expect(!cfg.use_temporal_module)
        try Self.expectEqual(try Self.reload(tmp.path("m"), .denoisingUNet), state, "denoiser")

        // With temporal modules while the config says false: the file decides (noted).
        let withTemporal = try Self.standIn(.denoisingUNet, temporal: true)
        try Pth.save(withTemporal, to: tmp.path("denoising_unet.pth"))
        let rep2 = try PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel, overwrite: true)
            .importCheckpoint(source: tmp.path("denoising_unet.pth"), outputDirectory: tmp.path("m"))
        #expect(rep2.notes.contains { $0.contains("use_temporal_module true") }, "\(rep2.notes)")
        try Self.expectEqual(try Self.reload(tmp.path("m"), .denoisingUNet), withTemporal, "denoiser+temporal")
    }

    @Test("PersonaLiveCheckpoint: AnimateDiff / X-NeMo temporal files are renamed and their pe tables dropped")
    func animateDiffTemporal() throws {
        let tmp = try TempDir()
        let state = try Self.standIn(.temporalModule)
        // motion_modules names and AnimateDiff-v1 position tables (24 positions instead of 32).
        let animateDiff = try state.map { k, t -> (String, Tensor) in
            let name = k.replacingOccurrences(of: "temporal_modules.", with: "motion_modules.")
            return (name, k.hasSuffix("pos_encoder.pe") ? try Tensor.zeros([1, 24, t.shape[2]]) : t)
        }
        #expect(animateDiff.contains { $0.0.hasSuffix("pos_encoder.pe") })
        try Pth.save(animateDiff, to: tmp.path("xnemo_temporal_module.pth"))
        let rep = try PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel)
            .importCheckpoint(source: tmp.path("xnemo_temporal_module.pth"), outputDirectory: tmp.path("m"))
        #expect(rep.result.kind == .temporalModule)
        let peCount = animateDiff.filter { $0.0.hasSuffix("pos_encoder.pe") }.count
        #expect(rep.result.renamed.count == animateDiff.count - peCount)
        #expect(rep.result.ignored.count == peCount && rep.allowedMissing.count == peCount)
        #expect(rep.result.ignored.allSatisfy { $0.contains("motion_modules.") && $0.hasSuffix("pos_encoder.pe") })
        #expect(!rep.allowedMissing.isEmpty && rep.allowedMissing.allSatisfy { $0.hasSuffix("pos_encoder.pe") })
        #expect(rep.notes.contains { $0.contains("motion_modules") })
        let got = try Self.reload(tmp.path("m"), .temporalModule)
        let pe = Set(state.map(\.0).filter { $0.hasSuffix("pos_encoder.pe") })
        try Self.expectEqual(got, state, "temporal", skipping: pe)
        // The pe tables are the constructor's (sinusoidal, max_len 32), as the reference keeps them.
        var c = try #require(try Self.tinyModel["denoising_unet"]).decode(UNet3DConditionModel.Config.self)
        c.use_temporal_module = true
        let fresh = Dictionary(uniqueKeysWithValues: try UNet3DConditionModel(c).temporalModuleSubset.stateDict())
        for (k, t) in got where pe.contains(k) {
            #expect(t.shape[1] == 32)
            #expect(try t.maxAbsDiff(fresh[k]!) == 0, "\(k)")
        }
    }

    @Test("PersonaLiveCheckpoint: LivePortrait's motion_extractor.pth without idx_tensor; extra keys refused")
    func motionExtractorAllowList() throws {
        let tmp = try TempDir()
        let state = try Self.standIn(.motionExtractor)
        let livePortrait = state.filter { $0.0 != "idx_tensor" }
        try Pth.save(livePortrait, to: tmp.path("motion_extractor.pth"))
        let rep = try PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel)
            .importCheckpoint(source: tmp.path("motion_extractor.pth"), outputDirectory: tmp.path("m"))
        #expect(rep.allowedMissing == ["idx_tensor"])
        let got = Dictionary(uniqueKeysWithValues: try Self.reload(tmp.path("m"), .motionExtractor))
        #expect(try got["idx_tensor"]!.toArray(Float.self) == (0..<66).map(Float.init))
        try Self.expectEqual(Array(got.filter { $0.key != "idx_tensor" }), livePortrait, "extractor")

        // A LivePortrait head that PersonaLive's module lacks is an error naming it.
        _ = try tmp.folder("x")
        try Pth.save(livePortrait + [("detector.head.weight", try Tensor.zeros([1000, 192]))], to: tmp.path("x/motion_extractor.pth"))
        let e = try #require(throws: (any Error).self) {
            try PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel)
                .importCheckpoint(source: tmp.path("x/motion_extractor.pth"), outputDirectory: tmp.path("m2"))
        }
        #expect("\(e)".contains("detector.head.weight") && "\(e)".contains("unexpected"), "\(e)")
        #expect(!FileManager.default.fileExists(atPath: tmp.path("m2")))
    }

    @Test("PersonaLiveCheckpoint: the FFHQ discriminator without its timestep embedding; a partial one is refused")
    func discriminatorAllowList() throws {
        let tmp = try TempDir()
        let state = try Self.standIn(.discriminator)
        let isTime = { (k: String) in k.hasPrefix("time_emb_proj.") || k.hasPrefix("time_embedding.") }
        let ffhq = state.filter { !isTime($0.0) }
        try Pth.save(ffhq, to: tmp.path("stylegan2_discriminator_ffhq512.pth"))
        let rep = try PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel)
            .importCheckpoint(source: tmp.path("stylegan2_discriminator_ffhq512.pth"), outputDirectory: tmp.path("m"))
        #expect(rep.result.kind == .discriminator)
        #expect(rep.allowedMissing == state.map(\.0).filter(isTime).sorted())
        let got = try Self.reload(tmp.path("m"), .discriminator)
        try Self.expectEqual(got, state, "discriminator", skipping: Set(state.map(\.0).filter(isTime)))
        // time_emb_proj is zero-initialised (zero_module), as in the reference.
        for (k, t) in got where k.hasPrefix("time_emb_proj.") { #expect(try t.abs().amax().item() == 0, "\(k)") }

        // Only part of the embedding: an error naming each missing key.
        let partial = state.filter { !$0.0.hasPrefix("time_embedding.") }
        _ = try tmp.folder("p")
        try Pth.save(partial, to: tmp.path("p/stylegan2_discriminator_ffhq512.pth"))
        let e = try #require(throws: (any Error).self) {
            try PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel)
                .importCheckpoint(source: tmp.path("p/stylegan2_discriminator_ffhq512.pth"), outputDirectory: tmp.path("m2"))
        }
        for k in state.map(\.0) where k.hasPrefix("time_embedding.") { #expect("\(e)".contains(k), "\(k): \(e)") }
    }

    @Test("PersonaLiveCheckpoint: the reference UNet ignores SD's output layers only")
    func referenceUNetOutputLayers() throws {
        let tmp = try TempDir()
        let state = try Self.standIn(.referenceUNet)
        let sd = state + [("conv_norm_out.weight", try Tensor.ones([32])), ("conv_norm_out.bias", try Tensor.zeros([32])),
                          ("conv_out.weight", try Tensor.zeros([4, 32, 3, 3])), ("conv_out.bias", try Tensor.zeros([4]))]
        try Pth.save(sd, to: tmp.path("reference_unet.pth"))
        let rep = try PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel)
            .importCheckpoint(source: tmp.path("reference_unet.pth"), outputDirectory: tmp.path("m"))
        #expect(rep.result.ignored.sorted() == ["conv_norm_out.bias", "conv_norm_out.weight", "conv_out.bias", "conv_out.weight"])
        try Self.expectEqual(try Self.reload(tmp.path("m"), .referenceUNet), state, "reference")
        #expect(try !SafeTensorsFile(path: tmp.path("m/reference_unet.safetensors")).keys.contains { $0.hasPrefix("conv_out") })
    }

    @Test("PersonaLiveCheckpoint: missing, extra and mis-shaped keys are all named; nothing is written")
    func badKeysNamed() throws {
        let tmp = try TempDir()
        let cfg = try Self.writeTinyConfig(tmp)
        var state = try Self.standIn(.poseGuider)
        state.removeAll { $0.0 == "blocks.1.bias" }
        let i = try #require(state.firstIndex { $0.0 == "conv_in.weight" })
        state[i] = ("conv_in.weight", try Tensor.zeros([8, 3, 5, 5]))
        state.append(("blocks.9.weight", try Tensor.zeros([4])))
        _ = try tmp.folder("src")
        try Pth.save(state, to: tmp.path("src/pose_guider.pth"))
        // The model folder already holds another module: it must stay untouched.
        let model = try tmp.folder("model")
        try "keep".write(toFile: model + "/motion_encoder.json", atomically: true, encoding: .utf8)
        let e = try #require(throws: (any Error).self) {
            try CheckpointImporter(configPath: cfg).run(source: tmp.path("src/pose_guider.pth"), outputDirectory: model)
        }
        let msg = "\(e)"
        #expect(msg.contains(tmp.path("src/pose_guider.pth")), "names the file: \(msg)")
        #expect(msg.contains("blocks.1.bias") && msg.contains("missing"), "\(msg)")
        #expect(msg.contains("blocks.9.weight") && msg.contains("unexpected"), "\(msg)")
        #expect(msg.contains("conv_in.weight") && msg.contains("[8, 3, 3, 3]") && msg.contains("[8, 3, 5, 5]"), "\(msg)")
        #expect(try tmp.listing("model") == ["motion_encoder.json"])
        #expect(try tmp.listing() == ["model", "model.json", "src"])

        // A file name that tells no module needs --kind; a wrong config section is named.
        try Pth.save(try Self.standIn(.poseGuider), to: tmp.path("src/guider.pth"))
        #expect(throws: (any Error).self) {
            try PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel)
                .importCheckpoint(source: tmp.path("src/guider.pth"), outputDirectory: tmp.path("m"))
        }
        _ = try PersonaLiveCheckpointImporter(kind: .poseGuider, modelConfig: try Self.tinyModel)
            .importCheckpoint(source: tmp.path("src/guider.pth"), outputDirectory: tmp.path("m"))
        let bad = JSONValue.object(["pose_guider": .object(["block_out_chanels": .array([.number(8)])])])
        let e2 = try #require(throws: (any Error).self) {
            try PersonaLiveCheckpointImporter(kind: .poseGuider, modelConfig: bad, overwrite: true)
                .importCheckpoint(source: tmp.path("src/guider.pth"), outputDirectory: tmp.path("m"))
        }
        #expect("\(e2)".contains("block_out_chanels"), "\(e2)")
    }

    @Test("PersonaLiveCheckpoint: existing module files are kept unless overwrite; fp16 kept with .source")
    func overwriteAndDTypes() throws {
        let tmp = try TempDir()
        let state = try Self.standIn(.poseGuider).map { ($0.0, try $0.1.to(.float16)) }
        try Pth.save(state, to: tmp.path("pose_guider.pth"))
        let imp = PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel, outputDType: .source)
        let r = try imp.run(source: tmp.path("pose_guider.pth"), outputDirectory: tmp.path("m"))
        #expect(r.sourceDTypes == [.float16: state.count] && r.outputDType == .float16)
        let f = try SafeTensorsFile(path: tmp.path("m/pose_guider.safetensors"))
        for (k, t) in state {
            #expect(f.entry(k)?.dtype == .float16)
            #expect(try f.tensor(k).maxAbsDiff(t) == 0, "\(k)")
        }
        #expect(throws: (any Error).self) { try imp.run(source: tmp.path("pose_guider.pth"), outputDirectory: tmp.path("m")) }
        var again = imp
        again.overwrite = true
        again.outputDType = .fixed(.float32)
        _ = try again.run(source: tmp.path("pose_guider.pth"), outputDirectory: tmp.path("m"))
        #expect(try SafeTensorsFile(path: tmp.path("m/pose_guider.safetensors")).entry("conv_in.weight")?.dtype == .float32)
        #expect(try tmp.listing("m") == ["pose_guider.json", "pose_guider.safetensors"])
    }

    @Test("PersonaLiveCheckpoint: export writes .pth files that read back equal; PyTorch loads them strict=True")
    func exportRoundTrip() throws {
        let tmp = try TempDir()
        let cfg = try Self.writeTinyConfig(tmp)
        let model = tmp.path("model")
        _ = try tmp.folder("src")
        for (name, kind) in CheckpointKind.releasedFileNames {
            var state = try Self.standIn(kind)
            if kind == .poseGuider { state = try state.map { ($0.0, try $0.1.to(.float16)) } }  // dtypes are kept
            try Pth.save(state, to: tmp.path("src/" + name))
            _ = try CheckpointImporter(kind: kind, outputDType: kind == .poseGuider ? .source : .fixed(.float32),
                                       configPath: cfg).run(source: tmp.path("src/" + name), outputDirectory: model)
        }
        var pairs: [(String, String)] = []
        for kind in CheckpointKind.personaLiveKinds {
            let weights = try PersonaLiveCheckpointExporter.resolve(source: model, module: kind.rawValue)
            let out = tmp.path("export/\(kind == .discriminator ? "stylegan2_discriminator_ffhq512" : kind.rawValue).pth")
            let r = try PersonaLiveCheckpointExporter().export(weightsPath: weights, to: out)
            #expect(r.kind == kind && r.checked && r.configSource == weights.replacingOccurrences(of: ".safetensors", with: ".json"))
            let file = try SafeTensorsFile(path: weights)
            let back = try Pth.load(path: out)
            #expect(back.count == file.keys.count, "\(kind)")
            // The module's state_dict order, every dtype and value as stored.
            let built = try PersonaLiveCheckpoints.build(kind, config: try JSONDecoder().decode(
                JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: weights.replacingOccurrences(of: ".safetensors", with: ".json")))),
                sourceKeys: file.keys)
            #expect(back.map(\.0) == built.module.stateDict().map(\.0), "\(kind): key order")
            for (k, t) in back {
                #expect(t.dtype == file.entry(k)?.dtype, "\(kind): \(k) dtype")
                #expect(try t.maxAbsDiff(file.tensor(k)) == 0, "\(kind): \(k)")
            }
            pairs.append((out, weights))
        }
        // Existing outputs are refused; a file that does not match its module is refused by name.
        #expect(throws: (any Error).self) {
            try PersonaLiveCheckpointExporter().export(weightsPath: pairs[0].1, to: pairs[0].0)
        }
        var broken = try SafeTensorsFile(path: model + "/pose_guider.safetensors").loadAll().map { ($0.key, $0.value) }
        broken.removeAll { $0.0 == "conv_out_modify.bias" }
        _ = try tmp.folder("broken")
        try SafeTensors.write(broken, to: tmp.path("broken/pose_guider.safetensors"))
        try FileManager.default.copyItem(atPath: model + "/pose_guider.json", toPath: tmp.path("broken/pose_guider.json"))
        let e = try #require(throws: (any Error).self) {
            try PersonaLiveCheckpointExporter().export(weightsPath: tmp.path("broken/pose_guider.safetensors"), to: tmp.path("b.pth"))
        }
        #expect("\(e)".contains("conv_out_modify.bias"), "\(e)")
        #expect(!FileManager.default.fileExists(atPath: tmp.path("b.pth")))

        try pytorchLoadsStrictly(pairs, tmp: tmp, model: model)
    }

    /// torch.load + load_state_dict(strict=True) into a torch.nn.Module whose parameters/buffers
    /// are created from our safetensors file's key list; values compared with safetensors.torch.
    /// Also writes a nested {"state_dict": {...}} file that the Swift importer must read.
    func pytorchLoadsStrictly(_ pairs: [(String, String)], tmp: TempDir, model: String) throws {
        let python = try TestPaths.requirePython()
        let script = """
            import sys, torch
            from safetensors.torch import load_file
            class FromKeys(torch.nn.Module):
                def __init__(self, reference):
                    super().__init__()
                    for key, t in reference.items():
                        *path, leaf = key.split('.')
                        m = self
                        for p in path:
                            if p not in m._modules:
                                m.add_module(p, torch.nn.Module())
                            m = m._modules[p]
                        empty = torch.zeros(t.shape, dtype=t.dtype)
                        if t.is_floating_point():
                            m.register_parameter(leaf, torch.nn.Parameter(empty))
                        else:
                            m.register_buffer(leaf, empty)
            args = sys.argv[1:]
            nested = args.pop()
            for pth, st in zip(args[0::2], args[1::2]):
                ref = load_file(st)
                # What the reference scripts call: torch.load(path, map_location="cpu") (weights_only=True
                # by default since torch 2.6).
                try:
                    sd = torch.load(pth, map_location='cpu')
                except Exception as e:
                    print('DEFAULT_LOAD_FAILED', pth, str(e).splitlines()[-3:])
                    sd = torch.load(pth, map_location='cpu', weights_only=False)
                assert isinstance(sd, dict), type(sd)
                m = FromKeys(ref)
                res = m.load_state_dict(sd, strict=True)
                assert not res.missing_keys and not res.unexpected_keys, res
                own = m.state_dict()
                for k, t in ref.items():
                    assert sd[k].dtype == t.dtype and sd[k].shape == t.shape, (pth, k, sd[k].dtype, t.dtype)
                    assert torch.equal(own[k], t) and torch.equal(sd[k], t), (pth, k)
                print('OK', pth, len(ref))
            torch.save({'state_dict': torch.load(args[0], weights_only=False)}, nested)
            """
        let scriptPath = tmp.path("check_export.py")
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        // The first pair is the denoiser; the nested copy is written as a released file name.
        let nestedDir = try tmp.folder("nested")
        let nested = nestedDir + "/denoising_unet.pth"
        let (status, out) = try TestPaths.run(URL(fileURLWithPath: python), [scriptPath] + pairs.flatMap { [$0.0, $0.1] } + [nested])
        #expect(status == 0, "\(out)")
        #expect(out.components(separatedBy: "OK ").count - 1 == pairs.count, "\(out)")
        // Plain torch.load (weights_only=True, the default since torch 2.6) must read our files:
        // tc_pth_save writes untagged dicts.
        #expect(!out.contains("DEFAULT_LOAD_FAILED"), "\(out)")

        // A genuinely nested pickle ({"state_dict": {...}}) imports like the flat file.
        #expect(pairs[0].1.hasSuffix("denoising_unet.safetensors"))
        let r = try PersonaLiveCheckpointImporter(modelConfig: try Self.tinyModel)
            .importCheckpoint(source: nested, outputDirectory: tmp.path("nested-model"))
        let want = try SafeTensorsFile(path: pairs[0].1)
        let got = try Self.reload(tmp.path("nested-model"), .denoisingUNet)
        try Self.expectEqual(got, try want.keys.map { ($0, try want.tensor($0)) }, "nested")
    }

    @Test("PersonaLiveCheckpoint: the personalive CLI imports and exports")
    func cli() throws {
        let exe = try #require(TestPaths.personaliveBinary?.path, "build the personalive product first (make test does)")
        let tmp = try TempDir()
        let cfg = try Self.writeTinyConfig(tmp)
        try Pth.save(try Self.standIn(.poseGuider), to: tmp.path("pose_guider.pth"))
        func run(_ args: [String]) throws -> (Int32, String) { try TestPaths.run(URL(fileURLWithPath: exe), args) }
        let (s1, o1) = try run(["checkpoint", "import", tmp.path("pose_guider.pth"), "--out", tmp.path("m"), "--config", cfg])
        #expect(s1 == 0, "\(o1)")
        #expect(o1.contains("PoseGuider"), "\(o1)")
        let (s2, o2) = try run(["checkpoint", "export", tmp.path("m"), "--module", "pose_guider", "--out", tmp.path("pg.pth")])
        #expect(s2 == 0, "\(o2)")
        #expect(try Pth.load(path: tmp.path("pg.pth")).count == 16)  // conv_in, 3 steps × 2 convs, conv_out_modify
        let (s3, o3) = try run(["checkpoint", "export", tmp.path("m"), "--out", tmp.path("pg.pth")])
        #expect(s3 != 0 && o3.contains("exists"), "\(o3)")
    }
}
