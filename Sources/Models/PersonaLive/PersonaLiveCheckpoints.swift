// PersonaLiveCheckpoints.swift — `personalive checkpoint import|export` for PersonaLive's own
// modules: the six released files (`denoising_unet.pth`, `reference_unet.pth`, `pose_guider.pth`,
// `motion_encoder.pth`, `motion_extractor.pth`, `temporal_module.pth`, pretrained_weights/personalive
// of GVCLab/PersonaLive) and the StyleGAN2 discriminator (`stylegan2_discriminator_ffhq512.pth`),
// plus the training savers' names (`denoising_unet-12000.pth`) and X-NeMo's (`xnemo_*.pth`).
//
// Import: the kind comes from --kind or the file name; the module is built from the model config
// (the section for that module of a model.yaml such as Configs/tiny/model.yaml, or the paper size
// when none is given) and the file is checked STRICTLY against it: every missing, unexpected and
// mis-shaped key is reported at once. The only exceptions are the documented allow-list
// (`PersonaLiveCheckpoints.allowList`, mirroring how the reference code loads each file). Output:
// `<name>.safetensors` (PyTorch key names) and `<name>.json` (the module's constructor config, with
// `_class_name` and `_module`), written to a temporary sibling folder, loaded back strictly, then
// renamed into the output folder — a model folder that may hold the other modules too.
//
// Export: one of our module files (`.safetensors`) → a `.pth` that PyTorch loads with `torch.load`
// + `load_state_dict(strict=True)` into the reference module: keys (in the module's state_dict
// order), dtypes and shapes exactly as stored, checked against the module first.
import Foundation
import NN
import Torch

// MARK: - kinds

extension CheckpointKind {
    /// PersonaLive's module kinds, in the order the released folder lists them.
    public static let personaLiveKinds: [CheckpointKind] = [
        .denoisingUNet, .referenceUNet, .poseGuider, .motionEncoder, .motionExtractor, .temporalModule, .discriminator,
    ]

    public var isPersonaLive: Bool { Self.personaLiveKinds.contains(self) }

    /// The released file names and the kinds they hold.
    public static let releasedFileNames: [(String, CheckpointKind)] = [
        ("denoising_unet.pth", .denoisingUNet), ("reference_unet.pth", .referenceUNet),
        ("pose_guider.pth", .poseGuider), ("motion_encoder.pth", .motionEncoder),
        ("motion_extractor.pth", .motionExtractor), ("temporal_module.pth", .temporalModule),
        ("stylegan2_discriminator_ffhq512.pth", .discriminator),
    ]

    /// The PersonaLive kind a file name tells, if any: a released name, a training save
    /// (`pose_guider-30000.pth`), an X-NeMo initialisation (`xnemo_temporal_module.pth`), a
    /// `stylegan2_discriminator*` file, or one of our module files (`temporal_module.safetensors`).
    public init?(personaLiveFileName path: String) {
        var base = (path as NSString).lastPathComponent
        for ext in [".safetensors", ".pth", ".pt", ".bin", ".ckpt"] where base.hasSuffix(ext) {
            base = String(base.dropLast(ext.count))
            break
        }
        if base.hasPrefix("stylegan2_discriminator") { self = .discriminator; return }
        if base.hasPrefix("xnemo_") { base = String(base.dropFirst("xnemo_".count)) }
        if let dash = base.lastIndex(of: "-"), !base[base.index(after: dash)...].isEmpty,
           base[base.index(after: dash)...].allSatisfy(\.isNumber) {
            base = String(base[..<dash])
        }
        guard let k = CheckpointKind(rawValue: base), k.isPersonaLive else { return nil }
        self = k
    }

    /// The model-config section this kind is built from (the temporal module is part of the denoiser).
    public var modelSection: String {
        switch self {
        case .temporalModule: return CheckpointKind.denoisingUNet.rawValue
        default: return rawValue
        }
    }

    /// Our class for the kind (the reference's: see each file's header).
    var personaLiveClassName: String {
        switch self {
        case .denoisingUNet: return "UNet3DConditionModel"
        case .referenceUNet: return "UNet2DConditionModel"
        case .poseGuider: return "PoseGuider"
        case .motionEncoder: return "MotionEncoder"
        case .motionExtractor: return "MotionExtractor"
        case .temporalModule: return "UNet3DConditionModel.temporal_modules"
        case .discriminator: return "StyleGAN2Discriminator"
        default: return rawValue
        }
    }
}

// MARK: - allow-list and module building

public enum PersonaLiveCheckpoints {
    /// Sections a model config (model.yaml) may hold; a config object with any of them is read as a
    /// whole model config, otherwise as one module's section.
    public static let modelSections = ["denoising_unet", "reference_unet", "pose_guider", "motion_encoder",
                                       "motion_extractor", "discriminator", "image_encoder", "vae"]

    /// The documented exceptions to strict loading, per kind (everything else must match exactly):
    public static let allowList: [CheckpointKind: String] = [
        .denoisingUNet: "The file decides use_temporal_module: a stage-1/2 save holds no `temporal_modules` keys "
            + "(the reference loads denoising_unet.pth with strict=False and temporal_module.pth on top), so the "
            + "module is built without them; a file with any `temporal_modules` key is checked with all of them.",
        .referenceUNet: "`conv_norm_out.*` / `conv_out.*` are ignored when present (PersonaLive's reference "
            + "UNet2DConditionModel never creates them; a plain SD UNet state dict has them).",
        .poseGuider: "none",
        .motionEncoder: "none",
        .motionExtractor: "`idx_tensor` may be missing (LivePortrait's motion_extractor.pth predates PersonaLive's "
            + "persistent buffer; the reference loads it with strict=False): it is arange(num_bins) either way.",
        .temporalModule: "Only the denoiser's `temporal_modules` keys. AnimateDiff / X-NeMo style files "
            + "(no `temporal_modules` key, `motion_modules` keys) are renamed motion_modules. → temporal_modules. "
            + "as from_pretrained_2d does, and their `pos_encoder.pe` tables are dropped (the constructor's "
            + "sinusoidal tables are kept, as the reference does).",
        .discriminator: "`time_emb_proj.*` and `time_embedding.*` may be missing together (the FFHQ StyleGAN2 "
            + "initialisation has no timestep embedding; stage 2 loads it with strict=False): they get the "
            + "constructor's initialisation (time_emb_proj zero, time_embedding PyTorch-default from the global "
            + "generator). A partial set is an error.",
    ]

    /// Wrapper prefixes stripped when every key has one (Pth.load already strips `state_dict.`,
    /// `module.` and `model.`): the same for safetensors sources, and `d.`/`D.`/`discriminator.`
    /// for discriminator checkpoints that keep D under such a key.
    static func wrappers(_ kind: CheckpointKind) -> [String] {
        var w = ["state_dict.", "module.", "model."]
        if kind == .discriminator { w += ["d.", "D.", "discriminator."] }
        return w
    }

    /// This kind's section of `config`: a whole model config (sections keyed by module name, or a
    /// training config with a `model:` mapping) gives the section (nil when absent: the paper size);
    /// anything else is taken as the module's section itself. Keys starting with `_` (our
    /// `_class_name` / `_module` markers) are dropped.
    public static func section(for kind: CheckpointKind, in config: JSONValue?) -> JSONValue? {
        guard case .object(let o) = config else { return nil }
        if case .object? = o["model"], !o.keys.contains(where: modelSections.contains) {
            return section(for: kind, in: o["model"])
        }
        let picked: [String: JSONValue]
        if o.keys.contains(where: modelSections.contains) {
            guard case .object(let s)? = o[kind.modelSection] else { return nil }
            picked = s
        } else {
            picked = o
        }
        return .object(picked.filter { !$0.key.hasPrefix("_") })
    }

    /// A module built for a kind, with how to load a checkpoint into it.
    public struct Built {
        /// What is loaded and written (for `temporalModule`, the denoiser's temporal-module subset).
        public let module: Module
        /// The whole model the module belongs to (the denoiser for `temporalModule`).
        public let owner: Module
        /// The module's constructor config, as written to `<name>.json`.
        public let config: JSONValue
        public let allowMissing: [String]
        public let ignoreUnexpected: [String]
        /// Our key → the source's key, for every source key under another name.
        public let currentToSource: [String: String]
        /// What the allow-list did, for the report.
        public let notes: [String]
    }

    /// Builds the module for `kind` from `config` (see `section`; nil: the paper size) with
    /// uninitialised storage, fitted to the source `keys` as the allow-list says. `configLabel`
    /// names the config in errors.
    public static func build(_ kind: CheckpointKind, config: JSONValue?, configLabel: String = "config",
                             sourceKeys keys: [String] = []) throws -> Built {
        let sec = section(for: kind, in: config)
        func decode<T: Decodable>(_ t: T.Type, default d: @autoclosure () -> T) throws -> T {
            guard let sec else { return d() }
            do { return try sec.decode(T.self) } catch {
                throw TorchError("\(configLabel): section \(kind.modelSection) is not a valid \(kind.personaLiveClassName) config: \(error)")
            }
        }
        func asJSON<T: Encodable>(_ v: T) throws -> JSONValue {
            try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(v))
        }
        let identity = [String: String]()
        switch kind {
        case .denoisingUNet:
            var c = try decode(UNet3DConditionModel.Config.self, default: .personalive(useTemporalModule: true))
            var notes: [String] = []
            if !keys.isEmpty {
                let hasTemporal = keys.contains { $0.contains("temporal_modules.") }
                if hasTemporal != c.use_temporal_module {
                    notes.append(hasTemporal
                        ? "the file holds temporal modules: built with use_temporal_module true"
                        : "the file holds no temporal modules (a stage-1/2 save): built with use_temporal_module false")
                    c.use_temporal_module = hasTemporal
                }
            }
            let m = try ParameterInit.uninitialized { try UNet3DConditionModel(c) }
            return Built(module: m, owner: m, config: try asJSON(c), allowMissing: [], ignoreUnexpected: [],
                         currentToSource: identity, notes: notes)
        case .referenceUNet:
            let c = try decode(UNet2DConditionModel.Config.self, default: .sd15ImageVariations)
            let m = try ParameterInit.uninitialized { try UNet2DConditionModel(c, withOutputLayers: false) }
            let ignore = ["conv_norm_out.*", "conv_out.*"]
            let ignored = keys.filter { Glob.matchesAny($0, ignore) }
            return Built(module: m, owner: m, config: try asJSON(c), allowMissing: [], ignoreUnexpected: ignore,
                         currentToSource: identity,
                         notes: ignored.isEmpty ? [] : ["ignored the output layers (\(ignored.joined(separator: ", ")))"])
        case .poseGuider:
            let c = try decode(PoseGuider.Config.self, default: PoseGuider.Config())
            let m = try ParameterInit.uninitialized { try PoseGuider(c) }
            return Built(module: m, owner: m, config: try asJSON(c), allowMissing: [], ignoreUnexpected: [],
                         currentToSource: identity, notes: [])
        case .motionEncoder:
            let c = try decode(MotionEncoder.Config.self, default: MotionEncoder.Config())
            let m = try ParameterInit.uninitialized { try MotionEncoder(c) }
            return Built(module: m, owner: m, config: try asJSON(c), allowMissing: [], ignoreUnexpected: [],
                         currentToSource: identity, notes: [])
        case .motionExtractor:
            let c = try decode(MotionExtractor.Config.self, default: MotionExtractor.Config())
            let m = try ParameterInit.uninitialized { try MotionExtractor(c) }
            let lacks = !keys.isEmpty && !keys.contains("idx_tensor")
            return Built(module: m, owner: m, config: try asJSON(c), allowMissing: ["idx_tensor"], ignoreUnexpected: [],
                         currentToSource: identity,
                         notes: lacks ? ["idx_tensor is not in the file (LivePortrait layout): set to arange(\(c.num_bins))"] : [])
        case .temporalModule:
            var c = try decode(UNet3DConditionModel.Config.self, default: .personalive(useTemporalModule: true))
            var notes: [String] = []
            if !c.use_temporal_module {
                c.use_temporal_module = true
                notes.append("built the denoiser with use_temporal_module true (the config had false)")
            }
            let unet = try ParameterInit.uninitialized { try UNet3DConditionModel(c) }
            let subset = unet.temporalModuleSubset
            var map = identity
            var allow: [String] = [], ignore: [String] = []
            let animateDiff = !keys.isEmpty && !keys.contains { $0.contains("temporal_modules.") }
                && keys.contains { $0.contains("motion_modules.") }
            if animateDiff {
                // The pe tables are not renamed: they stay unexpected under their own names and are
                // ignored, as from_pretrained_2d skips every pos_encoder key of a temporal checkpoint.
                for k in keys where k.contains("motion_modules.") && !k.hasSuffix("pos_encoder.pe") {
                    map[k.replacingOccurrences(of: "motion_modules.", with: "temporal_modules.")] = k
                }
                allow = ["*temporal_modules.*pos_encoder.pe"]
                ignore = ["*motion_modules.*pos_encoder.pe"]
                let dropped = keys.filter { $0.hasSuffix("pos_encoder.pe") }.count
                notes.append("AnimateDiff / X-NeMo layout: renamed motion_modules. → temporal_modules."
                             + (dropped > 0 ? "; dropped \(dropped) pos_encoder.pe tables (the constructor's are kept)" : ""))
            }
            return Built(module: subset, owner: unet, config: try asJSON(c), allowMissing: allow, ignoreUnexpected: ignore,
                         currentToSource: map, notes: notes)
        case .discriminator:
            let c = try decode(StyleGAN2Discriminator.Config.self, default: StyleGAN2Discriminator.Config())
            let timeKeys = ["time_emb_proj.*", "time_embedding.*"]
            let noTime = !keys.isEmpty && !keys.contains { Glob.matchesAny($0, timeKeys) }
            // Fresh weights are needed exactly where the allow-list lets keys be missing.
            let m = noTime ? try StyleGAN2Discriminator(c) : try ParameterInit.uninitialized { try StyleGAN2Discriminator(c) }
            return Built(module: m, owner: m, config: try asJSON(c), allowMissing: noTime ? timeKeys : [],
                         ignoreUnexpected: [], currentToSource: identity,
                         notes: noTime ? ["no timestep embedding in the file (FFHQ initialisation): time_emb_proj / "
                                          + "time_embedding freshly initialised"] : [])
        default:
            throw TorchError("\(kind.rawValue) is not a PersonaLive module kind")
        }
    }

    /// Reads a JSON config file (a model config, one module's section, or our `<name>.json`).
    /// YAML cannot be read at this layer: the CLI parses it and passes the value.
    public static func readConfigFile(_ path: String) throws -> JSONValue {
        if path.hasSuffix(".yaml") || path.hasSuffix(".yml") {
            throw TorchError("\(path): YAML cannot be read at this layer; give a JSON config (a model config, one "
                             + "module's section, or the <module>.json an import wrote) or the parsed YAML as modelConfig")
        }
        return try readConfigJSON(path)
    }
}

/// A view of some submodules of a model under their full key paths, so that its state dict is that
/// subset of the model's (e.g. the denoiser's temporal modules, what train_stage3 saves).
public final class StateDictSubsetModule: Module {
    public let parts: [(String, Module)]
    public init(_ parts: [(String, Module)]) {
        self.parts = parts
        super.init()
    }
    public override func listedChildren() -> [(String, Module)]? { parts }
}

extension UNet3DConditionModel {
    /// The temporal modules (`…temporal_modules.N`) as one module whose state dict is exactly the
    /// `temporal_modules` subset of this UNet's (temporal_module.pth), sharing the tensors.
    public var temporalModuleSubset: StateDictSubsetModule {
        StateDictSubsetModule(namedTemporalModules.map { ($0.0, $0.1 as Module) })
    }
}

// MARK: - import

public struct PersonaLiveCheckpointImporter {
    /// The module kind (nil: from the file name).
    public var kind: CheckpointKind?
    /// A parsed model config: a whole model.yaml (sections keyed by module), a training config with
    /// a `model:` mapping, or one module's section. Wins over `configPath`.
    public var modelConfig: JSONValue?
    /// A JSON config file of the same kinds (e.g. the `<name>.json` an earlier import wrote).
    public var configPath: String?
    public var outputDType: CheckpointImporter.OutputDType
    /// Output base name (default: the kind's: denoising_unet, …, temporal_module, discriminator).
    public var name: String?
    /// Replace `<name>.safetensors` / `<name>.json` when the output folder has them.
    public var overwrite: Bool

    public init(kind: CheckpointKind? = nil, modelConfig: JSONValue? = nil, configPath: String? = nil,
                outputDType: CheckpointImporter.OutputDType = .fixed(.float32), name: String? = nil,
                overwrite: Bool = false) {
        self.kind = kind
        self.modelConfig = modelConfig
        self.configPath = configPath
        self.outputDType = outputDType
        self.name = name
        self.overwrite = overwrite
    }

    public struct Report {
        public let result: CheckpointImporter.Result
        /// What the allow-list did (see PersonaLiveCheckpoints.allowList).
        public let notes: [String]
        /// Keys the module has that the file lacked, as the allow-list permits.
        public let allowedMissing: [String]
    }

    public func run(source: String, outputDirectory: String) throws -> CheckpointImporter.Result {
        try importCheckpoint(source: source, outputDirectory: outputDirectory).result
    }

    /// Imports one checkpoint file into the model folder `outputDirectory` (see the file header).
    public func importCheckpoint(source: String, outputDirectory: String) throws -> Report {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: source, isDirectory: &isDir) else { throw TorchError("\(source): no such file") }
        guard !isDir.boolValue else {
            throw TorchError("\(source) is a folder; PersonaLive modules are imported one file at a time "
                             + "(e.g. \(source)/denoising_unet.pth)")
        }
        guard let kind = kind ?? CheckpointKind(personaLiveFileName: source) else {
            throw TorchError("\(source): cannot tell the module from the file name; pass --kind "
                             + CheckpointKind.personaLiveKinds.map(\.rawValue).joined(separator: "|"))
        }
        guard kind.isPersonaLive else { throw TorchError("\(kind.rawValue) is not a PersonaLive module kind") }
        let config = try modelConfig ?? configPath.map(PersonaLiveCheckpoints.readConfigFile)
        let configLabel = modelConfig != nil ? "model config" : (configPath ?? "default config")

        let outURL = URL(fileURLWithPath: outputDirectory).standardizedFileURL
        let base = name ?? kind.defaultName
        guard !base.isEmpty, !base.contains("/") else { throw TorchError("output name '\(base)' is not a plain file name") }
        let weightsName = base + ".safetensors", configName = base + ".json"
        if fm.fileExists(atPath: outURL.path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw TorchError("\(outURL.path) exists and is not a folder") }
            for f in [weightsName, configName] where fm.fileExists(atPath: outURL.appendingPathComponent(f).path) && !overwrite {
                throw TorchError("\(outURL.appendingPathComponent(f).path) already exists (use --force to replace it)")
            }
        }

        // Read, build and load strictly in a scope of its own: a fully read .pth is freed before writing.
        let (built, counts, allowedMissing, ignored, unwrapped) = try loadSource(kind: kind, path: source, config: config,
                                                                                 configLabel: configLabel)
        let module = built.module
        let outDType: DType
        switch outputDType {
        case .fixed(let d): outDType = d
        case .source: outDType = counts.max { ($0.value, $1.key.rawValue) < ($1.value, $0.key.rawValue) }?.key ?? .float32
        }
        if outDType != .float32 { try module.to(dtype: outDType) }

        // Write to a temporary sibling folder, load back strictly, then move into place.
        let parent = outURL.deletingLastPathComponent()
        try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        let tmp = parent.appendingPathComponent(".\(outURL.lastPathComponent).import-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        defer { try? fm.removeItem(at: tmp) }

        let state = module.stateDict()
        try SafeTensors.write(state, metadata: ["format": "pt", "personalive_module": kind.rawValue],
                              to: tmp.appendingPathComponent(weightsName).path)
        var cfg = built.config.object ?? [:]
        cfg["_class_name"] = .string(kind.personaLiveClassName)
        cfg["_module"] = .string(kind.rawValue)
        try JSONValue.object(cfg).writePretty(to: tmp.appendingPathComponent(configName).path)
        do {
            try module.load(from: SafeTensorsSource(path: tmp.appendingPathComponent(weightsName).path), strict: true)
        } catch {
            throw TorchError("the converted file did not load back into \(kind.personaLiveClassName): \(error)")
        }
        try Self.commit(files: [weightsName, configName], from: tmp, into: outURL, overwrite: overwrite)

        let renamed = built.currentToSource.filter { $0.key != $0.value }.map { ($0.value, $0.key) }.sorted { $0.0 < $1.0 }
        let result = CheckpointImporter.Result(
            kind: kind, outputDirectory: outURL.path, weightsFile: outURL.appendingPathComponent(weightsName).path,
            configFile: outURL.appendingPathComponent(configName).path, tensorCount: state.count,
            parameterCount: module.parameterCount, sourceDTypes: counts, outputDType: outDType, renamed: renamed,
            ignored: ignored, usedDefaultConfig: PersonaLiveCheckpoints.section(for: kind, in: config) == nil)
        return Report(result: result, notes: unwrapped.map { "unwrapped the '\($0)' wrapper" } + built.notes,
                      allowedMissing: allowedMissing)
    }

    /// Opens the file, unwraps a wrapper, builds the module and loads it strictly (allow-list only).
    private func loadSource(kind: CheckpointKind, path: String, config: JSONValue?,
                            configLabel: String) throws
        -> (PersonaLiveCheckpoints.Built, [DType: Int], [String], [String], [String]) {
        var raw = try openStateDict(path: path)
        guard !raw.keys.isEmpty else { throw TorchError("\(path): holds no tensors") }
        // A wrapper around the whole state dict: seen under the inner names.
        var unwrapped: [String] = []
        for w in PersonaLiveCheckpoints.wrappers(kind) where raw.keys.allSatisfy({ $0.hasPrefix(w) }) {
            let map = Dictionary(uniqueKeysWithValues: raw.keys.map { (String($0.dropFirst(w.count)), $0) })
            raw = RenamedStateDictSource(raw, currentToSource: map)
            unwrapped.append(String(w.dropLast()))
        }
        var counts: [DType: Int] = [:]
        for k in raw.keys {
            if let dt = storedDType(of: k, in: raw), dt.isFloatingPoint { counts[dt, default: 0] += 1 }
        }
        let built = try PersonaLiveCheckpoints.build(kind, config: config, configLabel: configLabel, sourceKeys: raw.keys)
        let src = built.currentToSource.isEmpty ? raw : RenamedStateDictSource(raw, currentToSource: built.currentToSource)
        do {
            try built.module.load(from: src, strict: true, allowMissing: built.allowMissing,
                                  ignoreUnexpected: built.ignoreUnexpected)
        } catch let e as StateDictError {
            throw TorchError("\(path) does not match \(kind.personaLiveClassName) (\(kind.rawValue), built from "
                             + "\(PersonaLiveCheckpoints.section(for: kind, in: config) == nil ? "the paper-size default" : configLabel))"
                             + ":\n\(e.report)\nallowed exceptions for \(kind.rawValue): "
                             + (PersonaLiveCheckpoints.allowList[kind] ?? "none"))
        }
        let own = Set(built.module.stateDict().map(\.0))
        let present = Set(src.keys)
        let allowedMissing = own.filter { !present.contains($0) }.sorted()
        let ignored = src.keys.filter { !own.contains($0) && Glob.matchesAny($0, built.ignoreUnexpected) }
        return (built, counts, allowedMissing, ignored, unwrapped)
    }

    /// Moves `files` from the verified temporary folder into `dir`: the whole folder is renamed
    /// when `dir` does not exist yet, otherwise each file is renamed over its destination.
    static func commit(files: [String], from tmp: URL, into dir: URL, overwrite: Bool) throws {
        let fm = FileManager.default
        if !fm.fileExists(atPath: dir.path) {
            do {
                try fm.moveItem(at: tmp, to: dir)
                return
            } catch where fm.fileExists(atPath: dir.path) {
                // Created meanwhile: fall through to per-file moves.
            }
        }
        for f in files {
            let dest = dir.appendingPathComponent(f).path
            if fm.fileExists(atPath: dest), !overwrite {
                throw TorchError("\(dest) already exists (use --force to replace it)")
            }
        }
        for f in files {
            let from = tmp.appendingPathComponent(f).path, to = dir.appendingPathComponent(f).path
            guard rename(from, to) == 0 else {
                throw TorchError("\(to): rename failed: \(String(cString: strerror(errno)))")
            }
        }
    }
}

// MARK: - export

/// A state-dict source that knows shapes only (reading is a no-op): checks a file's keys and
/// shapes against a module through the strict loader without copying any data.
struct ShapeOnlySource: StateDictSource {
    let file: SafeTensorsFile
    var sourceName: String { file.path }
    var keys: [String] { file.keys }
    func shape(of key: String) -> [Int]? { file.entry(key)?.shape }
    func read(_ key: String, into tensor: Tensor) throws {}
}

public struct PersonaLiveCheckpointExporter {
    /// The module kind (nil: from the file name, else from `<name>.json` beside the file).
    public var kind: CheckpointKind?
    /// A parsed model config (as for import); nil: `<name>.json` beside the file, else the paper size.
    public var modelConfig: JSONValue?
    /// Check keys and shapes against the module (strict, no allow-list) before writing.
    public var check: Bool
    public var overwrite: Bool

    public init(kind: CheckpointKind? = nil, modelConfig: JSONValue? = nil, check: Bool = true, overwrite: Bool = false) {
        self.kind = kind
        self.modelConfig = modelConfig
        self.check = check
        self.overwrite = overwrite
    }

    public struct Result: Sendable {
        public let kind: CheckpointKind?
        public let source: String
        public let output: String
        public let tensorCount: Int
        public let dtypes: [DType: Int]
        /// Whether keys and shapes were checked against the module.
        public let checked: Bool
        /// Where the module config came from ("paper-size default" when none).
        public let configSource: String?
    }

    /// The module file of `source`: the file itself, or `<module>.safetensors` in a folder.
    public static func resolve(source: String, module: String?) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir) else {
            throw TorchError("\(source): no such file or folder")
        }
        if !isDir.boolValue {
            if let module { throw TorchError("--module \(module) picks a file in a folder, but \(source) is a file") }
            return source
        }
        let listing = ((try? FileManager.default.contentsOfDirectory(atPath: source)) ?? [])
            .filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }.sorted()
        // Optimizer and EMA state (optimizer[_<name>].safetensors, ema[_<name>].safetensors) are not modules.
        let modules = listing.filter { !$0.hasPrefix("optimizer") && !$0.hasPrefix("ema") }
        if let module {
            let name = module.hasSuffix(".safetensors") ? module : module + ".safetensors"
            guard listing.contains(name) else {
                throw TorchError("\(source) has no \(name) (module files: \(modules.joined(separator: ", ")))")
            }
            return (source as NSString).appendingPathComponent(name)
        }
        guard modules.count == 1 else {
            throw TorchError("\(source): pass --module NAME to pick one of \(modules.isEmpty ? "(no module files)" : modules.joined(separator: ", "))")
        }
        return (source as NSString).appendingPathComponent(modules[0])
    }

    /// Writes `weightsPath` (safetensors) as a `.pth` state dict at `output`.
    public func export(weightsPath: String, to output: String) throws -> Result {
        let fm = FileManager.default
        if fm.fileExists(atPath: output), !overwrite {
            throw TorchError("\(output) already exists (use --force to replace it)")
        }
        let file = try SafeTensorsFile(path: weightsPath)
        guard !file.keys.isEmpty else { throw TorchError("\(weightsPath): holds no tensors") }
        let besidePath = (weightsPath as NSString).deletingPathExtension + ".json"
        let beside = fm.fileExists(atPath: besidePath) ? try readConfigJSON(besidePath) : nil
        let resolvedKind = kind ?? CheckpointKind(personaLiveFileName: weightsPath)
            ?? beside?["_module"]?.string.flatMap(CheckpointKind.init(rawValue:))
            ?? file.metadata["personalive_module"].flatMap(CheckpointKind.init(rawValue:))

        var order = file.keys
        var configSource: String?
        if check {
            guard let k = resolvedKind, k.isPersonaLive else {
                throw TorchError("\(weightsPath): cannot tell which PersonaLive module this is; pass --kind "
                                 + CheckpointKind.personaLiveKinds.map(\.rawValue).joined(separator: "|")
                                 + " (or --no-check to copy the keys unchecked)")
            }
            let config = modelConfig ?? beside
            configSource = modelConfig != nil ? "model config" : (beside != nil ? besidePath : nil)
            let label = configSource ?? "config"
            // The file's keys only decide use_temporal_module (the denoiser) and whether the
            // discriminator's time embedding is expected; the check itself has no allow-list.
            let built = try PersonaLiveCheckpoints.build(k, config: config, configLabel: label, sourceKeys: file.keys)
            do {
                try built.module.load(from: ShapeOnlySource(file: file), strict: true)
            } catch let e as StateDictError {
                throw TorchError("\(weightsPath) does not match \(k.personaLiveClassName) built from "
                                 + "\(PersonaLiveCheckpoints.section(for: k, in: config) == nil ? "the paper-size default" : label) "
                                 + "(PyTorch's strict load would fail):\n\(e.report)")
            }
            if PersonaLiveCheckpoints.section(for: k, in: config) == nil { configSource = "paper-size default" }
            order = built.module.stateDict().map(\.0)
        }

        var tensors: [(String, Tensor)] = []
        var dtypes: [DType: Int] = [:]
        for k in order {
            let t = try file.tensor(k)
            dtypes[t.dtype, default: 0] += 1
            tensors.append((k, t))
        }
        try fm.createDirectory(at: URL(fileURLWithPath: output).deletingLastPathComponent(), withIntermediateDirectories: true)
        try Pth.save(tensors, to: output)

        // The written file must read back with the same keys, dtypes and shapes.
        let back = try Pth.load(path: output)
        let want = Dictionary(uniqueKeysWithValues: tensors.map { ($0.0, ($0.1.dtype, $0.1.shape)) })
        let matches = back.allSatisfy { (key: String, t: Tensor) -> Bool in
            guard let w = want[key] else { return false }
            return w.0 == t.dtype && w.1 == t.shape
        }
        guard back.count == tensors.count, matches else {
            throw TorchError("\(output): the written .pth does not read back with the keys, dtypes and shapes of \(weightsPath)")
        }
        return Result(kind: resolvedKind, source: weightsPath, output: output, tensorCount: tensors.count, dtypes: dtypes,
                      checked: check, configSource: configSource)
    }
}
