// ModelBundle.swift — every PersonaLive network, loaded once for inference, as src/wrapper.py's
// `PersonaLive.__init__` does (pose guider, motion encoder, motion extractor, denoising UNet with
// its temporal modules, reference UNet, VAE, CLIP image encoder), from either
//  (a) one of our checkpoint run folders (`Checkpoints/tiny-stage1`: its latest checkpoint; or one
//      `checkpoint-N`): the modules the run trained come from the checkpoint, the frozen ones from
//      the checkpoints its config names (`vae_checkpoint`, `motion_extractor_checkpoint`, …), and
//      modules it did not train from any checkpoint folder its stage section names; or
//  (b) a model.yaml whose `weights:` section names every module's file (safetensors, or `.pth`
//      state dicts) and whose `pipeline:` section gives sizes and the latent scale.
// Every module is loaded strictly (missing, unexpected and mis-shaped keys are named) and set to
// eval mode, no gradients, on the requested device and dtype.
import Foundation
import Logging
import Models
import NN
import Torch

/// Sizes, scale and schedules the networks were trained for (the `pipeline:` section of a
/// model.yaml; for a run folder, read from its stage section).
public struct PipelineSettings: Codable, Sendable, Equatable {
    /// Side of the square frames the VAE sees (512 for SD-1.5).
    public var image_size = 512
    public var motion_encoder_size = 224
    public var motion_extractor_size = 256
    /// Keypoint disc radius; 0 keeps the reference's proportion (4 on a 512² canvas).
    public var keypoint_radius = 0
    public var latent_scale = 0.18215
    public var scheduler = DDIMScheduler.Config.personaLive
    public var stream = StreamConfig()

    public init() {}

    enum K: String, CodingKey, CaseIterable {
        case image_size, motion_encoder_size, motion_extractor_size, keypoint_radius, latent_scale, scheduler, stream
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: K.self)
        let d = PipelineSettings()
        image_size = try c.value(.image_size, default: d.image_size)
        motion_encoder_size = try c.value(.motion_encoder_size, default: d.motion_encoder_size)
        motion_extractor_size = try c.value(.motion_extractor_size, default: d.motion_extractor_size)
        keypoint_radius = try c.value(.keypoint_radius, default: d.keypoint_radius)
        latent_scale = try c.value(.latent_scale, default: d.latent_scale)
        scheduler = try c.value(.scheduler, default: d.scheduler)
        stream = try c.value(.stream, default: d.stream)
    }

    /// The disc radius at image_size.
    public var renderRadius: Int { keypoint_radius > 0 ? keypoint_radius : Keypoints.renderRadius(canvasSize: image_size) }
}

public final class PersonaLiveModel {
    public let denoiser: UNet3DConditionModel
    public let reference: UNet2DConditionModel
    public let poseGuider: PoseGuider
    public let motionEncoder: MotionEncoder
    public let motionExtractor: MotionExtractor
    public let vae: AutoencoderKL
    public let imageEncoder: CLIPVisionModelWithProjection
    public let clipProcessor: CLIPImageProcessor
    public let settings: PipelineSettings
    public let device: Device
    public let dtype: DType
    /// What was loaded from where (one line per module), for logs and reports.
    public let sources: [String]

    public var hasTemporalModules: Bool { denoiser.config.use_temporal_module }

    /// The networks as given. With `prepare` (loading for inference) every module is frozen, set to
    /// eval mode and moved to `device` / `dtype`; without it (a training stage validating through
    /// the inference layer) the modules are shared untouched.
    public init(denoiser: UNet3DConditionModel, reference: UNet2DConditionModel, poseGuider: PoseGuider,
                motionEncoder: MotionEncoder, motionExtractor: MotionExtractor, vae: AutoencoderKL,
                imageEncoder: CLIPVisionModelWithProjection, settings: PipelineSettings, device: Device, dtype: DType,
                sources: [String], prepare: Bool = true, zeroFirst: Bool = false) throws {
        (self.denoiser, self.reference, self.poseGuider, self.motionEncoder) = (denoiser, reference, poseGuider, motionEncoder)
        (self.motionExtractor, self.vae, self.imageEncoder) = (motionExtractor, vae, imageEncoder)
        (self.settings, self.device, self.dtype, self.sources) = (settings, device, dtype, sources)
        var processor = CLIPImageProcessor()
        processor.shortestEdge = imageEncoder.config.image_size
        processor.cropSize = imageEncoder.config.image_size
        clipProcessor = processor
        guard prepare else { return }
        for m in [denoiser, reference, poseGuider, motionEncoder, motionExtractor, vae, imageEncoder] as [Module] {
            // Uninitialised pages would not count in RSS measurements: write them once.
            if zeroFirst { try Torch.noGrad { for p in m.parameters() { try p.zero_() } } }
            try m.freeze()
            m.eval()
            if dtype != .float32 { try m.to(dtype: dtype) }
            if device != .cpu { try m.to(device: device) }
        }
    }

    /// Loads a run folder, a checkpoint folder or a model.yaml (see the file header).
    public static func load(_ path: String, device: Device = .cpu, dtype: DType = .float32,
                            logger: Logger = Logger(label: "personalive.model")) throws -> PersonaLiveModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw InferenceError("--model \(path): no such file or folder")
        }
        let model = isDir.boolValue
            ? try RunFolderLoader(checkpoint: CheckpointModules.latestCheckpoint(in: path), logger: logger).load(device: device, dtype: dtype)
            : try ModelFileLoader(path: path, logger: logger).load(device: device, dtype: dtype)
        for line in model.sources { logger.info("\(line)") }
        return model
    }
}

extension PersonaLiveModel {
    /// Random networks in the architecture of a model.yaml (every section, `pipeline:` for sizes):
    /// benchmarks and tests. With `initialise` false, parameters are left uninitialised and zeroed
    /// (paper-size models: timing does not depend on the values, and initialising takes minutes);
    /// nil initialises models below 256² frames only.
    public static func random(modelYAML path: String, device: Device = .cpu, dtype: DType = .float32,
                              initialise: Bool? = nil) throws -> PersonaLiveModel {
        let doc = try ConfigLoader.load(JSONValue.self, path: path)
        func section<T: Decodable>(_ t: T.Type, _ key: String) throws -> T { try CheckpointModules.section(T.self, doc, key, file: path) }
        let settings = try doc["pipeline"].map { try ConfigLoader.section(PipelineSettings.self, $0, name: "pipeline", file: path) }
            ?? PipelineSettings()
        func build() throws -> PersonaLiveModel {
            try PersonaLiveModel(
                denoiser: UNet3DConditionModel(section(UNet3DConditionModel.Config.self, "denoising_unet")),
                reference: UNet2DConditionModel(section(UNet2DConditionModel.Config.self, "reference_unet"), withOutputLayers: false),
                poseGuider: PoseGuider(section(PoseGuider.Config.self, "pose_guider")),
                motionEncoder: MotionEncoder(section(MotionEncoder.Config.self, "motion_encoder")),
                motionExtractor: MotionExtractor(section(MotionExtractor.Config.self, "motion_extractor")),
                vae: AutoencoderKL(section(AutoencoderKL.Config.self, "vae")),
                imageEncoder: CLIPVisionModelWithProjection(section(CLIPVisionModelWithProjection.Config.self, "image_encoder")),
                settings: settings, device: .cpu, dtype: .float32, sources: ["random weights (\(path))"], prepare: false)
        }
        let initialise = initialise ?? (settings.image_size < 256)
        let m = initialise ? try build() : try ParameterInit.uninitialized(build)
        return try PersonaLiveModel(denoiser: m.denoiser, reference: m.reference, poseGuider: m.poseGuider,
                                    motionEncoder: m.motionEncoder, motionExtractor: m.motionExtractor, vae: m.vae,
                                    imageEncoder: m.imageEncoder, settings: settings, device: device, dtype: dtype,
                                    sources: m.sources, prepare: true, zeroFirst: !initialise)
    }
}

extension PersonaLiveModel {
    /// The modules under the file names a model.yaml's `weights:` uses.
    public var namedModules: [(String, Module)] {
        [("denoising_unet", denoiser), ("reference_unet", reference), ("pose_guider", poseGuider),
         ("motion_encoder", motionEncoder), ("motion_extractor", motionExtractor), ("vae", vae), ("image_encoder", imageEncoder)]
    }

    /// Writes every module to `<name>.safetensors` in `directory` and a model.yaml there: the text of
    /// `architecture` (a model.yaml without weights) plus a `weights:` section naming the files.
    /// Returns the model.yaml's path.
    public func writeModelFile(in directory: URL, architecture: String) throws -> String {
        var weights: [String] = []
        for (name, module) in namedModules {
            let file = directory.appendingPathComponent("\(name).safetensors").path
            try SafeTensors.write(module.stateDict(), to: file)
            weights.append("  \(name): \(file)")
        }
        let path = directory.appendingPathComponent("model.yaml").path
        try (String(contentsOfFile: architecture, encoding: .utf8) + "weights:\n" + weights.joined(separator: "\n") + "\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

// MARK: - loading helpers

/// Module files, checkpoint folders and their configs.
public enum CheckpointModules {
    /// `path` itself when it is a complete checkpoint folder (it holds trainer_state.json), else its
    /// newest complete `checkpoint-N` sub-folder.
    public static func latestCheckpoint(in path: String) throws -> URL {
        let url = URL(fileURLWithPath: path)
        let fm = FileManager.default
        if fm.fileExists(atPath: url.appendingPathComponent("trainer_state.json").path) { return url }
        let steps = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).compactMap { name -> (Int, URL)? in
            guard name.hasPrefix("checkpoint-"), let n = Int(name.dropFirst("checkpoint-".count)) else { return nil }
            let folder = url.appendingPathComponent(name)
            return fm.fileExists(atPath: folder.appendingPathComponent("trainer_state.json").path) ? (n, folder) : nil
        }
        guard let latest = steps.max(by: { $0.0 < $1.0 }) else {
            throw InferenceError("\(path): neither a checkpoint folder (trainer_state.json) nor a run folder with a complete "
                                 + "checkpoint-N inside")
        }
        return latest.1
    }

    /// A checkpoint folder's config.yaml, with `model:` read from the file it names when it is a path.
    /// A path a checkpoint's config names: as given when it exists (relative to the working
    /// directory, as `train` resolved it), else relative to the nearest ancestor of the checkpoint
    /// folder where it exists (the run was started from another directory).
    public static func resolve(_ path: String, from folder: String) -> String {
        let fm = FileManager.default
        guard !path.hasPrefix("/"), !fm.fileExists(atPath: path) else { return path }
        var dir = URL(fileURLWithPath: folder).standardizedFileURL
        while dir.path != "/" {
            dir = dir.deletingLastPathComponent()
            let candidate = dir.appendingPathComponent(path).path
            if fm.fileExists(atPath: candidate) { return candidate }
        }
        return path
    }

    public static func config(of folder: URL) throws -> JSONValue {
        let path = folder.appendingPathComponent("config.yaml").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw InferenceError("\(folder.path): no config.yaml (expected a checkpoint folder written by `personalive train`)")
        }
        var cfg = try ConfigLoader.load(JSONValue.self, path: path)
        if case .string(let modelPath)? = cfg["model"], case .object(var dict) = cfg {
            dict["model"] = try ConfigLoader.load(JSONValue.self, path: modelPath)
            cfg = .object(dict)
        }
        return cfg
    }

    /// Builds a module from a checkpoint folder's config (`build` gets the whole config.yaml, its
    /// `model:` section read in) and loads `<key>.safetensors` strictly.
    public static func load<M: Module>(folder path: String, key: String, what: String, logger: Logger,
                                       build: (JSONValue) throws -> M) throws -> M {
        guard !path.isEmpty else { throw InferenceError("\(what) is required") }
        let folder = URL(fileURLWithPath: path)
        let m = try build(config(of: folder))
        try m.load(from: SafeTensorsSource(path: folder.appendingPathComponent("\(key).safetensors").path))
        logger.info("loaded \(key) from \(path)")
        return m
    }

    /// A weights source from a folder (the first of `files` inside it), a safetensors file (or its
    /// index) or a PyTorch pickle.
    public static func weights(_ path: String, files: [String]) throws -> StateDictSource {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            let folder = URL(fileURLWithPath: path)
            guard let file = files.first(where: { FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path) }) else {
                throw InferenceError("\(path): none of \(files.joined(separator: ", ")) in this folder")
            }
            return try SafeTensorsSource(path: folder.appendingPathComponent(file).path)
        } else if path.hasSuffix(".safetensors") || path.hasSuffix(".index.json") {
            return try SafeTensorsSource(path: path)
        }
        guard FileManager.default.fileExists(atPath: path) else { throw InferenceError("\(path): no such weights file") }
        return TensorDictSource(try Pth.load(path: path), name: path)
    }

    /// The weights file of a CLIP image-encoder folder: `checkpoint import`'s, or a transformers folder's.
    public static let clipFiles = ["image_encoder.safetensors", "model.safetensors"]

    /// Decodes a model section strictly, naming the file and key path on errors.
    static func section<T: Decodable>(_ t: T.Type, _ model: JSONValue?, _ key: String, file: String) throws -> T {
        guard let value = model?[key] else { throw InferenceError("\(file): the model has no '\(key)' section") }
        return try ConfigLoader.section(T.self, value, name: "model.\(key)", file: file)
    }
}

/// Several weight files seen as one state dict (a denoiser from denoising_unet + temporal_module).
/// A key present in more than one file is an error.
struct UnionSource: StateDictSource {
    let parts: [StateDictSource]
    let owner: [String: Int]
    init(_ parts: [StateDictSource]) throws {
        var owner: [String: Int] = [:]
        for (i, p) in parts.enumerated() {
            for k in p.keys {
                if let j = owner[k] {
                    throw InferenceError("\(k) is in both \(parts[j].sourceName) and \(p.sourceName)")
                }
                owner[k] = i
            }
        }
        (self.parts, self.owner) = (parts, owner)
    }
    var sourceName: String { parts.map(\.sourceName).joined(separator: " + ") }
    var keys: [String] { owner.keys.sorted() }
    func shape(of key: String) -> [Int]? { owner[key].flatMap { parts[$0].shape(of: key) } }
    func read(_ key: String, into tensor: Tensor) throws {
        guard let i = owner[key] else { throw InferenceError("\(sourceName): no key \(key)") }
        try parts[i].read(key, into: tensor)
    }
}

/// The denoiser from its files: temporal modules built exactly when a file holds them.
func loadDenoiser(_ config: UNet3DConditionModel.Config, sources: [StateDictSource]) throws -> UNet3DConditionModel {
    var c = config
    let union = try UnionSource(sources)
    c.use_temporal_module = union.keys.contains { $0.contains("temporal_modules.") }
    let m = try UNet3DConditionModel(c)
    try m.load(from: union)
    return m
}

/// (a) A checkpoint folder of ours: trained modules from it, the rest from what its config names.
struct RunFolderLoader {
    let checkpoint: URL
    let logger: Logger

    init(checkpoint: URL, logger: Logger) {
        self.checkpoint = checkpoint
        self.logger = logger
    }

    func load(device: Device, dtype: DType) throws -> PersonaLiveModel {
        let cfg = try CheckpointModules.config(of: checkpoint)
        let file = checkpoint.appendingPathComponent("config.yaml").path
        guard let stage = cfg["stage"]?.string, let section = cfg[stage] else {
            throw InferenceError("\(file): no stage, or no section for it")
        }
        let model = cfg["model"]
        let fm = FileManager.default
        // Checkpoint folders the stage section names (e.g. the stage-1 checkpoint a stage-2 run
        // starts from), and those their sections name in turn (a stage-3 run → stage 2 → stage 1),
        // searched nearest first after the checkpoint itself for modules it does not hold.
        var folders = [checkpoint]
        // The stage sections along the chain, nearest first, with their folders.
        var chained: [(folder: URL, section: JSONValue)] = []
        var next = 0
        while next < folders.count {
            let folder = folders[next]
            next += 1
            let named: JSONValue?
            if folder == checkpoint {
                named = section
            } else {
                let c = try CheckpointModules.config(of: folder)
                named = c["stage"]?.string.flatMap { c[$0] }
                if let named { chained.append((folder, named)) }
            }
            guard case .object(let dict)? = named else { continue }
            for (_, v) in dict.sorted(by: { $0.key < $1.key }) {
                guard let named = v.string, !named.isEmpty else { continue }
                let p = CheckpointModules.resolve(named, from: folder.path)
                if fm.fileExists(atPath: URL(fileURLWithPath: p).appendingPathComponent("config.yaml").path),
                   !folders.contains(where: { $0.standardizedFileURL.path == URL(fileURLWithPath: p).standardizedFileURL.path }) {
                    folders.append(URL(fileURLWithPath: p))
                }
            }
        }
        var sources: [String] = []
        func moduleFile(_ key: String, required: Bool = true) throws -> StateDictSource? {
            for f in folders {
                let p = f.appendingPathComponent("\(key).safetensors").path
                if fm.fileExists(atPath: p) {
                    sources.append("\(key): \(p)")
                    return try SafeTensorsSource(path: p)
                }
            }
            guard required else { return nil }
            throw InferenceError("\(checkpoint.path): no \(key).safetensors here or in the checkpoints its config names ("
                                 + folders.dropFirst().map(\.path).joined(separator: ", ") + ")")
        }
        // A path this stage leaves empty is the one the nearest checkpoint it starts from names
        // (stage 3 inherits stage 2's VAE and motion extractor).
        func str(_ key: String) -> String {
            if let own = section[key]?.string, !own.isEmpty { return own }
            for (folder, s) in chained {
                if let p = s[key]?.string, !p.isEmpty { return CheckpointModules.resolve(p, from: folder.path) }
            }
            return ""
        }
        func int(_ key: String, _ d: Int) -> Int { section[key]?.int ?? d }

        var settings = PipelineSettings()
        settings.image_size = int("image_size", 64)
        settings.motion_encoder_size = int("motion_encoder_size", settings.image_size)
        settings.motion_extractor_size = int("motion_extractor_size", settings.image_size)
        settings.keypoint_radius = int("keypoint_radius", 0)
        if let sched = section["scheduler"] {
            settings.scheduler = try ConfigLoader.section(DDIMScheduler.Config.self, sched, name: "\(stage).scheduler", file: file)
        }
        let state = try ConfigLoader.load(JSONValue.self, path: checkpoint.appendingPathComponent("trainer_state.json").path)
        if let recorded = state["pipeline"]?["latent_scale"]?.double {
            settings.latent_scale = recorded
        } else if let configured = section["latent_scale"]?.double, configured > 0 {
            settings.latent_scale = configured
        } else {
            throw InferenceError("\(checkpoint.path): the latent scale was estimated during training and this checkpoint "
                                 + "does not record it (older format); give a model.yaml with pipeline.latent_scale")
        }

        let denoiser = try loadDenoiser(CheckpointModules.section(UNet3DConditionModel.Config.self, model, "denoising_unet", file: file),
                                        sources: [try moduleFile("denoising_unet")!] + [try moduleFile("temporal_module", required: false)].compactMap { $0 })
        let reference = try UNet2DConditionModel(CheckpointModules.section(UNet2DConditionModel.Config.self, model, "reference_unet",
                                                                          file: file), withOutputLayers: false)
        try reference.load(from: try moduleFile("reference_unet")!)
        let poseGuider = try PoseGuider(CheckpointModules.section(PoseGuider.Config.self, model, "pose_guider", file: file))
        try poseGuider.load(from: try moduleFile("pose_guider")!)
        let motionEncoder = try MotionEncoder(CheckpointModules.section(MotionEncoder.Config.self, model, "motion_encoder", file: file))
        try motionEncoder.load(from: try moduleFile("motion_encoder")!)

        let imageEncoder = try CLIPVisionModelWithProjection(
            CheckpointModules.section(CLIPVisionModelWithProjection.Config.self, model, "image_encoder", file: file))
        if let own = try moduleFile("image_encoder", required: false) {
            try imageEncoder.load(from: own)
        } else if !str("image_encoder_path").isEmpty {
            try imageEncoder.load(from: CheckpointModules.weights(str("image_encoder_path"), files: CheckpointModules.clipFiles),
                                  ignoreUnexpected: ["vision_model.embeddings.position_ids"])
            sources.append("image_encoder: \(str("image_encoder_path"))")
        } else {
            throw InferenceError("\(checkpoint.path): no image_encoder.safetensors and no \(stage).image_encoder_path")
        }
        let vae = try CheckpointModules.load(folder: str("vae_checkpoint"), key: "vae", what: "\(file): \(stage).vae_checkpoint",
                                             logger: logger) { m in
            try AutoencoderKL(CheckpointModules.section(AutoencoderKL.Config.self, m["model"], "vae", file: str("vae_checkpoint")))
        }
        sources.append("vae: \(str("vae_checkpoint"))")
        let extractor = try CheckpointModules.load(folder: str("motion_extractor_checkpoint"), key: "motion_extractor",
                                                   what: "\(file): \(stage).motion_extractor_checkpoint", logger: logger) { m in
            try MotionExtractor(CheckpointModules.section(MotionExtractor.Config.self, m["model"], "motion_extractor",
                                                          file: str("motion_extractor_checkpoint")))
        }
        sources.append("motion_extractor: \(str("motion_extractor_checkpoint"))")
        return try PersonaLiveModel(denoiser: denoiser, reference: reference, poseGuider: poseGuider, motionEncoder: motionEncoder,
                                    motionExtractor: extractor, vae: vae, imageEncoder: imageEncoder, settings: settings,
                                    device: device, dtype: dtype, sources: sources)
    }
}

/// (b) A model.yaml: architecture sections, `weights:` (module → file or folder) and `pipeline:`.
struct ModelFileLoader {
    let path: String
    let logger: Logger

    static let modules = ["denoising_unet", "temporal_module", "reference_unet", "pose_guider", "motion_encoder",
                          "motion_extractor", "vae", "image_encoder"]

    func load(device: Device, dtype: DType) throws -> PersonaLiveModel {
        let doc = try ConfigLoader.load(JSONValue.self, path: path)
        guard case .object(let weightsDict)? = doc["weights"] else {
            throw InferenceError("\(path): no weights: section (module → file) — a model.yaml for inference names every "
                                 + "module's weights (\(Self.modules.filter { $0 != "temporal_module" }.joined(separator: ", ")))")
        }
        let unknown = weightsDict.keys.filter { !Self.modules.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw InferenceError("\(path): unknown module in weights: \(unknown.joined(separator: ", ")) (known: "
                                 + Self.modules.joined(separator: ", ") + ")")
        }
        let settings = try doc["pipeline"].map {
            try ConfigLoader.section(PipelineSettings.self, $0, name: "pipeline", file: path)
        } ?? PipelineSettings()
        var sources: [String] = []
        func weights(_ key: String, files: [String] = [], required: Bool = true) throws -> StateDictSource? {
            guard let p = weightsDict[key]?.string, !p.isEmpty else {
                if required { throw InferenceError("\(path): weights.\(key) is missing") }
                return nil
            }
            guard FileManager.default.fileExists(atPath: p) else { throw InferenceError("\(path): weights.\(key): \(p) does not exist") }
            sources.append("\(key): \(p)")
            return try CheckpointModules.weights(p, files: files.isEmpty ? ["\(key).safetensors"] : files)
        }
        func section<T: Decodable>(_ t: T.Type, _ key: String) throws -> T {
            try CheckpointModules.section(T.self, doc, key, file: path)
        }
        let denoiser = try loadDenoiser(section(UNet3DConditionModel.Config.self, "denoising_unet"),
                                        sources: [try weights("denoising_unet")!] + [try weights("temporal_module", required: false)].compactMap { $0 })
        let reference = try UNet2DConditionModel(section(UNet2DConditionModel.Config.self, "reference_unet"), withOutputLayers: false)
        try reference.load(from: try weights("reference_unet")!, ignoreUnexpected: ["conv_norm_out.*", "conv_out.*"])
        let poseGuider = try PoseGuider(section(PoseGuider.Config.self, "pose_guider"))
        try poseGuider.load(from: try weights("pose_guider")!)
        let motionEncoder = try MotionEncoder(section(MotionEncoder.Config.self, "motion_encoder"))
        try motionEncoder.load(from: try weights("motion_encoder")!)
        let extractor = try MotionExtractor(doc["motion_extractor"] == nil ? MotionExtractor.Config()
                                            : section(MotionExtractor.Config.self, "motion_extractor"))
        try extractor.load(from: try weights("motion_extractor")!, allowMissing: ["idx_tensor"])
        let vae = try AutoencoderKL(doc["vae"] == nil ? AutoencoderKL.Config() : section(AutoencoderKL.Config.self, "vae"))
        try vae.load(from: try weights("vae", files: ["vae.safetensors", "diffusion_pytorch_model.safetensors"])!)
        let imageEncoder = try CLIPVisionModelWithProjection(section(CLIPVisionModelWithProjection.Config.self, "image_encoder"))
        try imageEncoder.load(from: try weights("image_encoder", files: CheckpointModules.clipFiles)!,
                              ignoreUnexpected: ["vision_model.embeddings.position_ids"])
        return try PersonaLiveModel(denoiser: denoiser, reference: reference, poseGuider: poseGuider, motionEncoder: motionEncoder,
                                    motionExtractor: extractor, vae: vae, imageEncoder: imageEncoder, settings: settings,
                                    device: device, dtype: dtype, sources: sources)
    }
}
