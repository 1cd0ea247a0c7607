// CheckpointImporter.swift — converts diffusers / transformers weights into this toolkit's layout,
// the job of diffusers' `from_pretrained` + `save_pretrained` for the three pretrained parts
// PersonaLive uses (UNet2DConditionModel, AutoencoderKL, CLIPVisionModelWithProjection).
//
// Sources: a model folder (config.json + diffusion_pytorch_model.safetensors / model.safetensors /
// *.bin, sharded via *.index.json or not) or a single weights file (.safetensors, .bin, .pth, .pt)
// with its config.json beside it (or the full-size default config of the kind). Output: a folder
// with `<name>.safetensors` (exact PyTorch key names) and `config.json`, written to a temporary
// sibling and renamed into place only after the written file loaded strictly.
import Foundation
import NN
import Torch

// MARK: - reading sources

/// A diffusers / transformers model folder: its config.json and weights file(s).
public struct DiffusersFolder {
    public let directory: String
    public let configPath: String?
    /// The weights file (or shard index) this folder is read from.
    public let weightsPath: String

    /// Weight file names tried in order (diffusers first, then transformers, then variants).
    public static let weightFileNames = [
        "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
        "model.safetensors", "model.safetensors.index.json",
        "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
        "diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json",
        "pytorch_model.bin", "pytorch_model.bin.index.json",
        "diffusion_pytorch_model.fp16.bin", "pytorch_model.fp16.bin",
    ]

    public init(_ directory: String) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw TorchError("\(directory): not a folder")
        }
        self.directory = directory
        let cfg = (directory as NSString).appendingPathComponent("config.json")
        configPath = fm.fileExists(atPath: cfg) ? cfg : nil
        if let name = Self.weightFileNames.first(where: { fm.fileExists(atPath: (directory as NSString).appendingPathComponent($0)) }) {
            weightsPath = (directory as NSString).appendingPathComponent(name)
        } else {
            let listing = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
            let candidates = listing.filter { $0.hasSuffix(".safetensors") || $0.hasSuffix(".bin") || $0.hasSuffix(".pth") }
            guard candidates.count == 1 else {
                throw TorchError("\(directory): no weights file found (looked for \(Self.weightFileNames.prefix(4).joined(separator: ", ")), …"
                                 + (candidates.isEmpty ? ")" : "; several candidates: \(candidates.sorted().joined(separator: ", ")))"))
            }
            weightsPath = (directory as NSString).appendingPathComponent(candidates[0])
        }
    }

    public func configJSON() throws -> JSONValue {
        guard let configPath else { throw TorchError("\(directory): no config.json") }
        return try readConfigJSON(configPath)
    }

    /// Decodes config.json strictly; errors name the file.
    public func decodeConfig<T: Decodable>(_ type: T.Type) throws -> T {
        guard let configPath else { throw TorchError("\(directory): no config.json") }
        return try decodeConfigFile(configPath, as: T.self)
    }

    public func weights() throws -> StateDictSource { try openStateDict(path: weightsPath) }
}

func readConfigJSON(_ path: String) throws -> JSONValue {
    do {
        return try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    } catch {
        throw TorchError("\(path): cannot read JSON: \(error)")
    }
}

func decodeConfigFile<T: Decodable>(_ path: String, as: T.Type) throws -> T {
    let json = try readConfigJSON(path)
    do { return try json.decode(T.self) } catch {
        throw TorchError("\(path): not a valid \(T.self): \(error)")
    }
}

/// Opens any weights file as a load source: `.safetensors`, `*.safetensors.index.json` (read
/// tensor by tensor, straight into parameters), PyTorch pickles (`.bin`, `.pth`, `.pt`, `.ckpt`,
/// read whole) and `*.bin.index.json` shard indexes.
public func openStateDict(path: String) throws -> StateDictSource {
    guard FileManager.default.fileExists(atPath: path) else { throw TorchError("\(path): no such file") }
    if path.hasSuffix(".safetensors") || path.hasSuffix(".safetensors.index.json") {
        return try SafeTensorsSource(path: path)
    }
    if path.hasSuffix(".index.json") {
        guard let map = try readConfigJSON(path)["weight_map"]?.object else {
            throw TorchError("\(path): shard index without a weight_map object")
        }
        let dir = (path as NSString).deletingLastPathComponent
        var tensors: [String: Tensor] = [:]
        for shard in Set(map.values.compactMap(\.string)).sorted() {
            let shardPath = (dir as NSString).appendingPathComponent(shard)
            for (k, t) in try Pth.load(path: shardPath) where map[k]?.string == shard { tensors[k] = t }
        }
        if let lost = map.keys.sorted().first(where: { tensors[$0] == nil }) {
            throw TorchError("\(path): key '\(lost)' is listed in the index but not found in shard \(map[lost]?.string ?? "?")")
        }
        return TensorDictSource(tensors, name: path)
    }
    return TensorDictSource(try Pth.load(path: path), name: path)
}

/// The stored dtype of `key` in a source opened by `openStateDict` (nil when it cannot be told).
public func storedDType(of key: String, in source: StateDictSource) -> DType? {
    switch source {
    case let s as SafeTensorsSource: return s.source.entry(key)?.dtype
    case let s as TensorDictSource: return s.tensors[key]?.dtype
    case let s as RenamedStateDictSource: return storedDType(of: s.currentToSource[key] ?? key, in: s.base)
    default: return nil
    }
}

// MARK: - importing

public enum CheckpointKind: String, CaseIterable, Sendable {
    case unet, vae, clip
    // PersonaLive's modules: imported by PersonaLiveCheckpointImporter (PersonaLiveCheckpoints.swift),
    // which `run` hands them to (by --kind or by the released file name).
    case denoisingUNet = "denoising_unet", referenceUNet = "reference_unet", poseGuider = "pose_guider",
         motionEncoder = "motion_encoder", motionExtractor = "motion_extractor", temporalModule = "temporal_module",
         discriminator

    /// The output file's base name.
    public var defaultName: String {
        switch self {
        case .unet: return "unet"
        case .vae: return "vae"
        case .clip: return "image_encoder"
        default: return rawValue
        }
    }

    /// The class a config's `_class_name` / `architectures` names for this kind.
    public var className: String {
        switch self {
        case .unet: return "UNet2DConditionModel"
        case .vae: return "AutoencoderKL"
        case .clip: return "CLIPVisionModelWithProjection"
        default: return personaLiveClassName
        }
    }

    /// The kind a config names by class (`_class_name`, `architectures`, `model_type`), if any.
    public static func named(in config: JSONValue?) -> CheckpointKind? {
        guard let config else { return nil }
        let names = [config["_class_name"]?.string] + (config["architectures"]?.array?.map(\.string) ?? [])
        for kind in allCases where names.contains(kind.className) { return kind }
        if let t = config["model_type"]?.string, t == "clip_vision_model" || t == "clip" { return .clip }
        return nil
    }

    /// Guesses the kind from a config (class name, model_type) or, failing that, from the keys.
    public static func detect(config: JSONValue?, keys: [String]) -> CheckpointKind? {
        if let named = named(in: config) { return named }
        let set = Set(keys)
        if keys.contains(where: { $0.hasPrefix("vision_model.") }) { return .clip }
        if set.contains("quant_conv.weight") || keys.contains(where: { $0.hasPrefix("decoder.up_blocks.") }) { return .vae }
        if set.contains("conv_in.weight") && keys.contains(where: { $0.hasPrefix("time_embedding.") }) { return .unet }
        return nil
    }
}

public struct CheckpointImporter {
    /// What the written file's floating-point tensors are stored as.
    public enum OutputDType: Equatable, Sendable {
        /// The source's (most common) floating dtype.
        case source
        case fixed(DType)

        public init(parsing s: String) throws {
            switch s.lowercased() {
            case "source": self = .source
            case "float32", "fp32", "f32": self = .fixed(.float32)
            case "float16", "fp16", "f16", "half": self = .fixed(.float16)
            case "bfloat16", "bf16": self = .fixed(.bfloat16)
            default: throw TorchError("unknown dtype '\(s)' (source, float32, float16, bfloat16)")
            }
        }
    }

    public var kind: CheckpointKind?
    public var outputDType: OutputDType = .fixed(.float32)
    /// Output file base name (default: the kind's: unet, vae, image_encoder).
    public var name: String?
    /// A config.json to use instead of the one beside the weights.
    public var configPath: String?
    /// Replace an existing output folder.
    public var overwrite = false

    public init(kind: CheckpointKind? = nil, outputDType: OutputDType = .fixed(.float32), name: String? = nil,
                configPath: String? = nil, overwrite: Bool = false) {
        self.kind = kind
        self.outputDType = outputDType
        self.name = name
        self.configPath = configPath
        self.overwrite = overwrite
    }

    public struct Result: Sendable {
        public let kind: CheckpointKind
        public let outputDirectory: String
        public let weightsFile: String
        public let configFile: String
        public let tensorCount: Int
        public let parameterCount: Int
        /// Floating dtypes found in the source, with counts.
        public let sourceDTypes: [DType: Int]
        public let outputDType: DType
        /// (source key, our key) for every renamed key.
        public let renamed: [(String, String)]
        /// Source keys dropped on purpose (e.g. CLIP's legacy position_ids).
        public let ignored: [String]
        /// True when no config was found and the kind's full-size default was used.
        public let usedDefaultConfig: Bool
    }

    /// Converts `source` into `outputDirectory` (see the file header). PersonaLive kinds (given,
    /// or told by a released file name such as `denoising_unet.pth`) go to PersonaLiveCheckpointImporter.
    public func run(source: String, outputDirectory: String) throws -> Result {
        var isFolder: ObjCBool = false
        let named = FileManager.default.fileExists(atPath: source, isDirectory: &isFolder) && !isFolder.boolValue
            ? CheckpointKind(personaLiveFileName: source) : nil
        if let k = kind ?? named, k.isPersonaLive {
            return try PersonaLiveCheckpointImporter(kind: k, configPath: configPath, outputDType: outputDType,
                                                     name: name, overwrite: overwrite)
                .importCheckpoint(source: source, outputDirectory: outputDirectory).result
        }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: source, isDirectory: &isDir) else { throw TorchError("\(source): no such file or folder") }

        let outURL = URL(fileURLWithPath: outputDirectory).standardizedFileURL
        let parent = outURL.deletingLastPathComponent()
        if fm.fileExists(atPath: outURL.path), !overwrite {
            throw TorchError("\(outURL.path) already exists (use --force to replace it)")
        }

        // 1. Locate config and weights.
        let weightsPath: String
        var cfgPath = configPath
        if isDir.boolValue {
            let folder = try DiffusersFolder(source)
            weightsPath = folder.weightsPath
            cfgPath = cfgPath ?? folder.configPath
        } else {
            weightsPath = source
            let beside = ((source as NSString).deletingLastPathComponent as NSString).appendingPathComponent("config.json")
            if cfgPath == nil, fm.fileExists(atPath: beside) { cfgPath = beside }
        }
        let configJSON = try cfgPath.map(readConfigJSON)

        // 2–4 in a scope of their own, so a fully read .pth source is freed before writing.
        let (kind, built, dtypeCounts, sourceKeys) = try loadSource(weightsPath: weightsPath, sourceLabel: source,
                                                                     configJSON: configJSON, configPath: cfgPath)
        let module = built.module
        let outDType: DType
        switch outputDType {
        case .fixed(let d): outDType = d
        case .source: outDType = dtypeCounts.max { ($0.value, $1.key.rawValue) < ($1.value, $0.key.rawValue) }?.key ?? .float32
        }
        // Cast in place, tensor by tensor: no second full copy of the weights is ever held.
        if outDType != .float32 { try module.to(dtype: outDType) }

        // 5. Write to a temporary sibling, verify, rename.
        try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        let tmp = parent.appendingPathComponent(".\(outURL.lastPathComponent).import-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        var committed = false
        defer { if !committed { try? fm.removeItem(at: tmp) } }

        let fileName = (name ?? kind.defaultName) + ".safetensors"
        let state = module.stateDict()
        let weightsOut = tmp.appendingPathComponent(fileName).path
        try SafeTensors.write(state, metadata: ["format": "pt"], to: weightsOut)
        let configOut = tmp.appendingPathComponent("config.json").path
        try Self.outputConfig(built.config, kind: kind, source: configJSON).writePretty(to: configOut)

        // The written file must load back strictly.
        do {
            try module.load(from: SafeTensorsSource(path: weightsOut), strict: true)
        } catch {
            throw TorchError("the converted file did not load back into \(kind.className): \(error)")
        }

        if fm.fileExists(atPath: outURL.path) {
            let old = parent.appendingPathComponent(".\(outURL.lastPathComponent).old-\(getpid())")
            try fm.moveItem(at: outURL, to: old)
            do { try fm.moveItem(at: tmp, to: outURL) } catch {
                try? fm.moveItem(at: old, to: outURL)
                throw error
            }
            try? fm.removeItem(at: old)
        } else {
            try fm.moveItem(at: tmp, to: outURL)
        }
        committed = true

        let renamed = built.currentToSource.filter { $0.key != $0.value }.map { ($0.value, $0.key) }.sorted { $0.0 < $1.0 }
        let ignored = sourceKeys.filter { k in Glob.matchesAny(k, built.ignoreUnexpected) }
        return Result(kind: kind, outputDirectory: outURL.path, weightsFile: outURL.appendingPathComponent(fileName).path,
                      configFile: outURL.appendingPathComponent("config.json").path, tensorCount: state.count,
                      parameterCount: module.parameterCount, sourceDTypes: dtypeCounts, outputDType: outDType,
                      renamed: renamed, ignored: ignored, usedDefaultConfig: configJSON == nil)
    }

    /// Opens the weights, picks the kind, builds the module and loads it strictly (fp32).
    func loadSource(weightsPath: String, sourceLabel: String, configJSON: JSONValue?,
                    configPath cfgPath: String?) throws -> (CheckpointKind, Built, [DType: Int], [String]) {
        let raw = try openStateDict(path: weightsPath)
        guard !raw.keys.isEmpty else { throw TorchError("\(weightsPath): holds no tensors") }
        let detected = CheckpointKind.detect(config: configJSON, keys: raw.keys)
        guard let kind = kind ?? detected else {
            throw TorchError("\(sourceLabel): cannot tell whether this is a unet, vae or clip checkpoint; pass --kind")
        }
        if let named = CheckpointKind.named(in: configJSON), named != kind {
            throw TorchError("\(cfgPath ?? "config.json") describes a \(named.className), not a \(kind.className) (--kind \(kind.rawValue))")
        }
        let built = try Self.build(kind, config: configJSON, configPath: cfgPath, keys: raw.keys)
        let src = RenamedStateDictSource(raw, currentToSource: built.currentToSource)
        do {
            try built.module.load(from: src, strict: true, ignoreUnexpected: built.ignoreUnexpected)
        } catch let e as StateDictError {
            throw TorchError("\(weightsPath) does not match \(kind.className)"
                             + "\(cfgPath.map { " built from \($0)" } ?? " (default full-size config)"):\n\(e.report)")
        }
        var counts: [DType: Int] = [:]
        for k in raw.keys {
            if let dt = storedDType(of: k, in: raw), dt.isFloatingPoint { counts[dt, default: 0] += 1 }
        }
        return (kind, built, counts, raw.keys)
    }

    struct Built {
        let module: Module
        let config: JSONValue
        let currentToSource: [String: String]
        let ignoreUnexpected: [String]
    }

    /// Builds the module (uninitialised storage) from the config, or the kind's full-size default.
    static func build(_ kind: CheckpointKind, config: JSONValue?, configPath: String?, keys: [String]) throws -> Built {
        func decode<T: Decodable>(_ t: T.Type, default d: T) throws -> T {
            guard let config else { return d }
            do { return try config.decode(T.self) } catch {
                throw TorchError("\(configPath ?? "config"): not a valid \(kind.className) config: \(error)")
            }
        }
        func asJSON<T: Encodable>(_ v: T) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(v)) }
        let identity = Dictionary(uniqueKeysWithValues: keys.map { ($0, $0) })
        switch kind {
        case .vae:
            let c = try decode(AutoencoderKL.Config.self, default: .sdVAE)
            let m = try ParameterInit.uninitialized { try AutoencoderKL(c) }
            return Built(module: m, config: try asJSON(c), currentToSource: try AutoencoderKL.renameLegacyKeys(keys),
                         ignoreUnexpected: [])
        case .clip:
            let c = try decode(CLIPVisionModelWithProjection.Config.self, default: .vitL14)
            let m = try ParameterInit.uninitialized { try CLIPVisionModelWithProjection(c) }
            var ignore = CLIPVisionModelWithProjection.ignoredCheckpointKeys
            // A full CLIPModel checkpoint: keep the vision tower and its projection only.
            if config?["vision_config"] != nil { ignore += ["text_model.*", "text_projection.*", "logit_scale"] }
            return Built(module: m, config: try asJSON(c), currentToSource: identity, ignoreUnexpected: ignore)
        case .unet:
            let c = try decode(UNet2DConditionModel.Config.self, default: .sd15ImageVariations)
            // PersonaLive's reference UNet is saved without conv_norm_out / conv_out.
            let withOutput = keys.contains("conv_out.weight")
            let m = try ParameterInit.uninitialized { try UNet2DConditionModel(c, withOutputLayers: withOutput) }
            return Built(module: m, config: try asJSON(c), currentToSource: identity, ignoreUnexpected: [])
        default:
            throw TorchError("\(kind.rawValue) checkpoints are imported by PersonaLiveCheckpointImporter")
        }
    }

    /// Our config.json: the decoded config (every field explicit) plus the class/version markers.
    static func outputConfig(_ config: JSONValue, kind: CheckpointKind, source: JSONValue?) -> JSONValue {
        guard case .object(var o) = config else { return config }
        for (k, v) in source?.object ?? [:] where k.hasPrefix("_") && k != "_name_or_path" { o[k] = v }
        switch kind {
        case .clip:
            o["architectures"] = .array([.string(kind.className)])
            o["model_type"] = .string("clip_vision_model")
            if let v = source?["transformers_version"] { o["transformers_version"] = v }
        default: o["_class_name"] = .string(kind.className)
        }
        return .object(o)
    }
}

extension JSONValue {
    /// Sorted-key, indented JSON, written atomically.
    func writePretty(to path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try enc.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
