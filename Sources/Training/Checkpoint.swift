// Checkpoint.swift — checkpoint folders as diffusers/accelerate users know them
// (`Checkpoints/<run>/checkpoint-<step>/`): one safetensors file per module with PyTorch key names,
// optimizer_<name>.safetensors and ema_<name>.safetensors per optimizer, trainer_state.json and
// config.yaml. A checkpoint is
// written to a temporary sibling folder, fsynced, then renamed, so a folder named checkpoint-N is
// always complete; `keep_last` rotates old ones out.
import Foundation
import Torch

/// What, besides tensors, a run needs to continue exactly.
public struct TrainerState: Codable, Sendable, Equatable {
    public var format = "personalive-trainer-state"
    public var version = 1
    public var stage: String
    public var step: Int
    /// Index of the next sample the data pipeline hands out (the samplers are a pure function
    /// of seed and position, so this is the whole data cursor).
    public var data_cursor: Int
    public var config_digest: String
    /// RNG states, base64 of torch's generator state bytes.
    public var rng_generator: String
    public var rng_global: String
    public var modules: [String]
    public var time: String
    /// float16 mixed precision: the GradScaler's scale and growth tracker.
    public var grad_scale: Double?
    public var grad_scale_growth_tracker: Int?
    /// Values that inference needs and the config does not fix, e.g. `latent_scale` when the stage
    /// estimated it from the data (`TrainingStage.pipelineMetadata`); absent in older checkpoints.
    public var pipeline: [String: Double]?
    /// Data parallelism: the number of processes that wrote it (absent: 1) and every rank's RNG
    /// states and data cursor (rank 0's are also the fields above).
    public var world_size: Int?
    public var ranks: [RankState]?

    public init(stage: String, step: Int, data_cursor: Int, config_digest: String, rng_generator: String,
                rng_global: String, modules: [String]) {
        self.stage = stage
        self.step = step
        self.data_cursor = data_cursor
        self.config_digest = config_digest
        self.rng_generator = rng_generator
        self.rng_global = rng_global
        self.modules = modules
        self.time = ISO8601DateFormatter().string(from: Date())
    }
}

/// One data-parallel rank's resumable state.
public struct RankState: Codable, Sendable, Equatable {
    public var rank: Int
    public var data_cursor: Int
    public var rng_generator: String
    public var rng_global: String
    public init(rank: Int, data_cursor: Int, rng_generator: String, rng_global: String) {
        self.rank = rank
        self.data_cursor = data_cursor
        self.rng_generator = rng_generator
        self.rng_global = rng_global
    }
}

public struct CheckpointContents {
    public var modules: [(String, [(String, Tensor)])]
    /// Per optimizer name: its state keyed by parameter name (optimizer_<name>.safetensors).
    public var optimizers: [(String, [(String, Tensor)])]
    /// Per optimizer with EMA: the shadow weights (ema_<name>.safetensors).
    public var emas: [(String, [(String, Tensor)])]
    public var state: TrainerState
    public var configYAML: String
}

public struct CheckpointManager {
    public let root: URL
    public let keepLast: Int

    public init(root: URL, keepLast: Int) {
        self.root = root
        self.keepLast = keepLast
    }

    static let prefix = "checkpoint-"
    /// Optimizer state of optimizer `name`, keyed by parameter name.
    public static func optimizerFile(_ name: String) -> String { "optimizer_\(name).safetensors" }
    public static func emaFile(_ name: String) -> String { "ema_\(name).safetensors" }
    /// The one optimizer's state by parameter position, as checkpoints before named optimizers hold it.
    public static let legacyOptimizerFile = "optimizer.safetensors"

    public func folder(step: Int) -> URL { root.appendingPathComponent("\(Self.prefix)\(step)") }

    /// Complete checkpoints (checkpoint-N folders with a readable trainer_state.json), oldest first.
    public func list() -> [(step: Int, url: URL)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.compactMap { name -> (Int, URL)? in
            guard name.hasPrefix(Self.prefix), let step = Int(name.dropFirst(Self.prefix.count)) else { return nil }
            let url = root.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.appendingPathComponent("trainer_state.json").path) else {
                return nil
            }
            return (step, url)
        }.sorted { $0.0 < $1.0 }.map { (step: $0.0, url: $0.1) }
    }

    public func latest() -> URL? { list().last?.url }

    @discardableResult
    public func save(_ c: CheckpointContents) throws -> URL {
        let fm = FileManager.default
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        removeStaleTemporaries()
        let final = folder(step: c.state.step)
        let tmp = root.appendingPathComponent(".tmp-\(Self.prefix)\(c.state.step)-\(getpid())")
        try? fm.removeItem(at: tmp)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
        do {
            for (name, tensors) in c.modules {
                try SafeTensors.write(tensors, metadata: ["format": "pt"], to: tmp.appendingPathComponent("\(name).safetensors").path)
            }
            for (name, state) in c.optimizers {
                try SafeTensors.write(state, metadata: ["format": "pt", "optimizer": "AdamW", "name": name],
                                      to: tmp.appendingPathComponent(Self.optimizerFile(name)).path)
            }
            for (name, shadow) in c.emas {
                try SafeTensors.write(shadow, metadata: ["format": "pt"], to: tmp.appendingPathComponent(Self.emaFile(name)).path)
            }
            try writeSynced(Data(c.configYAML.utf8), to: tmp.appendingPathComponent("config.yaml"))
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            // trainer_state.json is written last: its presence marks the folder complete.
            try writeSynced(try enc.encode(c.state), to: tmp.appendingPathComponent("trainer_state.json"))
            fsyncPath(tmp.path)
            if fm.fileExists(atPath: final.path) { try discard(final) }
            guard rename(tmp.path, final.path) == 0 else {
                throw TrainingError.io("cannot rename \(tmp.path) to \(final.path): \(String(cString: strerror(errno)))")
            }
            fsyncPath(root.path)
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
        rotate()
        return final
    }

    /// Removes temporary folders left by a killed writer.
    func removeStaleTemporaries() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        for n in names where n.hasPrefix(".tmp-\(Self.prefix)") {
            try? FileManager.default.removeItem(at: root.appendingPathComponent(n))
        }
    }

    func rotate() {
        guard keepLast > 0 else { return }
        let all = list()
        for old in all.dropLast(keepLast) { try? discard(old.url) }
    }

    /// Deletes a checkpoint folder without ever leaving a half-deleted `checkpoint-N`: it is first
    /// renamed to a temporary name (atomic), which `removeStaleTemporaries` also cleans up if a
    /// kill interrupts the deletion.
    func discard(_ url: URL) throws {
        let doomed = root.appendingPathComponent(".tmp-\(Self.prefix)discard-\(url.lastPathComponent)-\(getpid())")
        guard rename(url.path, doomed.path) == 0 else {
            throw TrainingError.io("cannot move \(url.path) aside: \(String(cString: strerror(errno)))")
        }
        fsyncPath(root.path)
        try FileManager.default.removeItem(at: doomed)
    }

    public static func readState(_ url: URL) throws -> TrainerState {
        let file = url.appendingPathComponent("trainer_state.json")
        do {
            return try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: file))
        } catch {
            throw TrainingError.io("\(file.path): not a valid trainer state: \(error)")
        }
    }
}

func writeSynced(_ data: Data, to url: URL) throws {
    let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw TrainingError.io("cannot create \(url.path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    try data.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let n = write(fd, raw.baseAddress! + off, raw.count - off)
            if n < 0 { throw TrainingError.io("write to \(url.path) failed: \(String(cString: strerror(errno)))") }
            off += n
        }
    }
    fsync(fd)
}

func fsyncPath(_ path: String) {
    let fd = open(path, O_RDONLY)
    if fd >= 0 {
        fsync(fd)
        close(fd)
    }
}
