// DatasetReader.swift — opens a PersonaLive HDF5 dataset, validates its layout (DatasetValidator)
// and reads clips: one frame by hyperslab, boxes, pose and keypoints. Safe to share between the
// prefetcher's worker threads (the HDF5 library here is built thread-safe; the caches are locked).
import Foundation
import Logging
import Media

public final class DatasetReader: @unchecked Sendable {
    public let path: String
    /// Clips in name order.
    public let clips: [ClipInfo]
    public let splits: [String: [String]]
    private let file: HDF5File
    private let index: [String: Int]
    private let lock = NSLock()
    private var frameSets: [String: HDF5Dataset] = [:]
    private var boxCache: [String: [Float]] = [:]
    private let logger: Logger

    /// Opens and validates; a file that breaks the layout throws `DatasetLayoutError` listing every problem.
    public init(path: String, logger: Logger = Logger(label: "personalive.data")) throws {
        self.path = path
        self.logger = logger
        file = try HDF5File(path: path, mode: .readOnly)
        let summary = DatasetValidator.validate(file)
        guard summary.isValid else { throw DatasetLayoutError(file: path, problems: summary.problems) }
        clips = summary.clips
        splits = summary.splits
        index = Dictionary(uniqueKeysWithValues: summary.clips.enumerated().map { ($1.id, $0) })
        logger.debug("opened \(path): \(clips.count) clips")
        let guessed = clips.filter { $0.boxesSource == BoxesSource.template.rawValue }
        if !guessed.isEmpty {
            logger.warning("\(path): \(guessed.count) of \(clips.count) clips have template face/eye/mouth boxes (not measured on the frames; e.g. \(guessed[0].id)): the masked losses and the motion encoder's face crop use them")
        }
    }

    public func info(_ id: String) throws -> ClipInfo {
        guard let i = index[id] else { throw HDF5Error(file: path, object: DatasetLayout.clipPath(id), "no such clip") }
        return clips[i]
    }

    /// Clip ids of a split ("train", "val").
    public func split(_ name: String) throws -> [String] {
        guard let ids = splits[name] else { throw HDF5Error(file: path, object: "/\(DatasetLayout.splitsGroup)/\(name)", "no such split") }
        return ids
    }

    private func frameSet(_ id: String) throws -> HDF5Dataset {
        lock.lock()
        defer { lock.unlock() }
        if let d = frameSets[id] { return d }
        let d = try file.dataset(DatasetLayout.clipPath(id) + "/frames")
        frameSets[id] = d
        return d
    }

    /// Frame `t` of a clip.
    public func frame(_ id: String, _ t: Int) throws -> RGBImage {
        let c = try info(id)
        guard t >= 0, t < c.frameCount else {
            throw HDF5Error(file: path, object: DatasetLayout.clipPath(id) + "/frames", "frame \(t) out of range 0..<\(c.frameCount)")
        }
        var px = [UInt8](repeating: 0, count: c.width * c.height * 3)
        let d = try frameSet(id)
        try px.withUnsafeMutableBytes {
            try d.readRaw(into: $0, as: .uint8, start: [t, 0, 0, 0], count: [1, c.height, c.width, 3])
        }
        return try RGBImage(width: c.width, height: c.height, pixels: px)
    }

    /// All frames of a clip as T×H×W×3 bytes.
    public func allFrames(_ id: String) throws -> [UInt8] {
        try frameSet(id).read(UInt8.self)
    }

    /// The T×16 boxes of a clip (cached).
    public func boxes(_ id: String) throws -> [Float] {
        lock.lock()
        if let b = boxCache[id] { lock.unlock(); return b }
        lock.unlock()
        let b = try file.dataset(DatasetLayout.clipPath(id) + "/boxes").read(Float.self)
        lock.lock()
        boxCache[id] = b
        lock.unlock()
        return b
    }

    public func boxes(_ id: String, frame t: Int) throws -> FaceBoxes {
        let b = try boxes(id)
        return FaceBoxes(flat: b[(t * 16)..<(t * 16 + 16)])
    }

    /// T×7 pose rows, or nil when the clip has none.
    public func pose(_ id: String) throws -> [Float]? {
        guard try info(id).hasPose else { return nil }
        return try file.dataset(DatasetLayout.clipPath(id) + "/pose").read(Float.self)
    }

    /// T×21×3 canonical keypoints, or nil when the clip has none.
    public func keypoints(_ id: String) throws -> [Float]? {
        guard try info(id).hasKeypoints else { return nil }
        return try file.dataset(DatasetLayout.clipPath(id) + "/keypoints").read(Float.self)
    }

    /// The whole clip in memory.
    public func clip(_ id: String) throws -> ClipData {
        let c = try info(id)
        return ClipData(id: id, width: c.width, height: c.height, fps: c.fps, source: c.source, frames: try allFrames(id),
                        boxes: try boxes(id), pose: try pose(id), keypoints: try keypoints(id))
    }

    /// Bytes on disk.
    public var fileSize: Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0
    }
}
