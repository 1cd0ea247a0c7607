// DatasetWriter.swift — writes the PersonaLive HDF5 layout (DatasetLayout.swift). The file is built
// under a temporary name and renamed into place by `finish()`, so readers never see a half-written
// dataset. A resumable writer keeps a fixed partial name instead, flushes after every clip and
// reopens it on the next run, keeping the clips that are complete.
import CHDF5
import Foundation
import Logging
import Media

public final class DatasetWriter {
    /// The final destination.
    public let path: String
    /// Where the data is being written until `finish()`.
    public let workingPath: String
    /// Clip ids in the file (complete ones, including those kept from a previous run).
    public private(set) var clipIDs: [String] = []
    /// The `source` attribute of every clip in `clipIDs`.
    public private(set) var clipSources: [String: String] = [:]
    private var file: HDF5File?
    private var clips: HDF5Group?
    private let resumable: Bool
    private var finished = false
    private let logger: Logger

    /// The partial file name a resumable writer uses for `path`.
    public static func partialPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().appendingPathComponent("." + url.lastPathComponent + ".partial").path
    }

    /// Starts a new dataset (any existing file at `path` is replaced on `finish()`).
    /// With `resumable`, an existing partial file from an interrupted run is reopened and its
    /// complete clips kept; when only a finished file exists, it is copied and extended.
    public init(path: String, resumable: Bool = false, logger: Logger = Logger(label: "personalive.data")) throws {
        self.path = path
        self.resumable = resumable
        self.logger = logger
        try AtomicOutput.ensureParentDirectory(of: path)
        let fm = FileManager.default
        if resumable {
            workingPath = DatasetWriter.partialPath(for: path)
            if fm.fileExists(atPath: workingPath), let reopened = DatasetWriter.reopen(workingPath, mode: .readWrite, logger: logger) {
                file = reopened
            } else if fm.fileExists(atPath: path), DatasetWriter.reopen(path, mode: .readOnly, logger: logger) != nil {
                try? fm.removeItem(atPath: workingPath)
                do { try fm.copyItem(atPath: path, toPath: workingPath) } catch {
                    throw HDF5Error(file: path, object: nil, "cannot copy to \(workingPath) to extend it: \(error.localizedDescription)")
                }
                file = try HDF5File(path: workingPath, mode: .readWrite)
                logger.info("extending the existing dataset \(path)")
            }
        } else {
            workingPath = AtomicOutput.temporarySibling(of: path)
        }
        if file == nil {
            let f = try HDF5File(path: workingPath, mode: .truncate)
            try f.root.setAttribute("format", DatasetLayout.format)
            try f.root.setAttribute("version", DatasetLayout.version)
            try f.root.createGroup(DatasetLayout.clipsGroup)
            file = f
        }
        let f = file!
        let cg = try f.root.requireGroup(DatasetLayout.clipsGroup)
        clips = cg
        // Keep clips that validate; drop ones a killed run left half-written.
        for id in try cg.memberNames() {
            var problems: [LayoutProblem] = []
            if let info = DatasetValidator.validateClip(cg, id, &problems) {
                clipIDs.append(id)
                clipSources[id] = info.source
            } else {
                logger.warning("dropping incomplete clip \(id) from \(workingPath): \(problems.map(\.description).joined(separator: "; "))")
                try cg.delete(id)
            }
        }
        if !clipIDs.isEmpty { logger.info("resuming with \(clipIDs.count) complete clips") }
        try f.flush()
    }

    /// Opens an existing file for appending if it is a dataset of this format, else nil.
    private static func reopen(_ path: String, mode: HDF5File.Mode, logger: Logger) -> HDF5File? {
        do {
            let f = try HDF5File(path: path, mode: mode)
            guard try f.root.attribute("format")?.stringValue == DatasetLayout.format else {
                logger.warning("\(path) is not a \(DatasetLayout.format) file; starting over")
                return nil
            }
            return f
        } catch {
            logger.warning("cannot reopen \(path) (\(error)); starting over")
            return nil
        }
    }

    deinit {
        clips = nil
        file = nil
        // A resumable partial file is kept for the next run; a one-shot temporary is removed.
        if !finished && !resumable { AtomicOutput.discard(workingPath) }
    }

    public func contains(_ id: String) -> Bool { clipIDs.contains(id) }

    private func openClips() throws -> HDF5Group {
        guard let clips, !finished else { throw HDF5Error(file: path, object: nil, "writer is finished") }
        return clips
    }

    /// Writes a whole clip.
    public func addClip(_ clip: ClipData) throws {
        let t = clip.frameCount
        let appender = try beginClip(id: clip.id, width: clip.width, height: clip.height, fps: clip.fps, source: clip.source)
        let n = clip.width * clip.height * 3
        try clip.frames.withUnsafeBytes { raw in
            for i in 0..<t {
                try appender.appendFrame(UnsafeRawBufferPointer(rebasing: raw[(i * n)..<((i + 1) * n)]))
            }
        }
        guard clip.boxes.count == t * 16 else {
            throw HDF5Error(file: path, object: DatasetLayout.clipPath(clip.id) + "/boxes", "\(clip.boxes.count) values for \(t) frames, expected \(t * 16)")
        }
        try appender.finish(boxes: clip.boxes, pose: clip.pose, keypoints: clip.keypoints, boxesSource: clip.boxesSource)
    }

    /// Starts a clip whose frames are appended one at a time (constant memory for long videos).
    public func beginClip(id: String, width: Int, height: Int, fps: Double, source: String) throws -> ClipAppender {
        let cg = try openClips()
        let full = DatasetLayout.clipPath(id)
        guard DatasetLayout.isValidClipID(id) else { throw HDF5Error(file: path, object: full, "invalid clip id '\(id)'") }
        guard !clipIDs.contains(id), try !cg.exists(id) else { throw HDF5Error(file: path, object: full, "clip already exists") }
        guard width > 0, height > 0, fps > 0 else {
            throw HDF5Error(file: path, object: full, "bad clip geometry \(width)x\(height) @ \(fps) fps")
        }
        let g = try cg.createGroup(id)
        let frames = try g.createDataset("frames", dtype: .uint8, shape: [0, height, width, 3], maxShape: [nil, height, width, 3],
                                         chunks: [1, height, width, 3], deflate: DatasetLayout.frameDeflate)
        return ClipAppender(writer: self, group: g, frames: frames, id: id, width: width, height: height, fps: fps, source: source)
    }

    fileprivate func clipFinished(_ id: String, source: String) throws {
        clipIDs.append(id)
        clipSources[id] = source
        // A resumable file must be consistent on disk after every clip; a one-shot temporary need not.
        if resumable { try file?.flush() }
    }

    /// Removes a clip (used when a video turns out to be broken half-way).
    public func removeClip(_ id: String) throws {
        let cg = try openClips()
        if try cg.exists(id) { try cg.delete(id) }
        clipIDs.removeAll { $0 == id }
        clipSources[id] = nil
    }

    /// Writes the split lists, closes the file and moves it to `path`.
    public func finish(train: [String], val: [String]) throws {
        guard let f = file, !finished else { throw HDF5Error(file: path, object: nil, "writer is already finished") }
        let known = Set(clipIDs)
        for id in train + val where !known.contains(id) {
            throw HDF5Error(file: path, object: "/\(DatasetLayout.splitsGroup)", "split lists unknown clip '\(id)'")
        }
        let root = try f.root
        if try root.exists(DatasetLayout.splitsGroup) { try root.delete(DatasetLayout.splitsGroup) }
        let sg = try root.createGroup(DatasetLayout.splitsGroup)
        try sg.writeStrings("train", train)
        try sg.writeStrings("val", val)
        try f.flush()
        clips = nil
        file = nil
        try AtomicOutput.commit(workingPath, to: path)
        finished = true
        logger.info("wrote \(clipIDs.count) clips to \(path)")
    }
}

/// Appends frames of one clip, then writes its boxes, pose, keypoints and attributes.
public final class ClipAppender {
    public let id: String
    public let width: Int
    public let height: Int
    public private(set) var frameCount = 0
    private unowned let writer: DatasetWriter
    private let group: HDF5Group
    private let frames: HDF5Dataset
    private let fps: Double
    private let source: String
    private var capacity = 0

    fileprivate init(writer: DatasetWriter, group: HDF5Group, frames: HDF5Dataset, id: String, width: Int, height: Int,
                     fps: Double, source: String) {
        self.writer = writer; self.group = group; self.frames = frames; self.id = id
        self.width = width; self.height = height; self.fps = fps; self.source = source
    }

    public func appendFrame(_ image: RGBImage) throws {
        guard image.width == width, image.height == height else {
            throw HDF5Error(file: writer.path, object: group.path + "/frames", "frame \(frameCount) is \(image.width)x\(image.height), the clip is \(width)x\(height)")
        }
        try image.pixels.withUnsafeBytes { try appendFrame($0) }
    }

    /// Appends one H×W×3 frame given as raw bytes.
    public func appendFrame(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count == width * height * 3 else {
            throw HDF5Error(file: writer.path, object: group.path + "/frames", "frame \(frameCount) has \(bytes.count) bytes, expected \(width * height * 3)")
        }
        // Grow in steps so a long video does not resize the dataset once per frame.
        if frameCount == capacity {
            capacity = max(16, capacity * 2)
            try frames.resize(to: [capacity, height, width, 3])
        }
        try frames.writeRaw(bytes, as: .uint8, start: [frameCount, 0, 0, 0], count: [1, height, width, 3])
        frameCount += 1
    }

    /// Finishes the clip: trims the frames, writes boxes (T×16), optional pose (T×7) and keypoints
    /// (T×63), and records how the boxes were made (`boxesSource`) and how many frames had no face
    /// of their own (`missingBoxes`).
    public func finish(boxes: [Float], pose: [Float]? = nil, keypoints: [Float]? = nil, boxesSource: String? = nil,
                       missingBoxes: Int? = nil) throws {
        let t = frameCount
        guard t > 0 else { throw HDF5Error(file: writer.path, object: group.path, "clip has no frames") }
        try frames.resize(to: [t, height, width, 3])
        guard boxes.count == t * 16 else {
            throw HDF5Error(file: writer.path, object: group.path + "/boxes", "\(boxes.count) values for \(t) frames, expected \(t * 16)")
        }
        try group.writeDataset("boxes", values: boxes, shape: [t, 4, 4])
        if let pose {
            let k = DatasetLayout.poseNames.count
            guard pose.count == t * k else { throw HDF5Error(file: writer.path, object: group.path + "/pose", "\(pose.count) values, expected \(t * k)") }
            try group.writeDataset("pose", values: pose, shape: [t, k])
        }
        if let keypoints {
            let k = DatasetLayout.keypointCount
            guard keypoints.count == t * k * 3 else {
                throw HDF5Error(file: writer.path, object: group.path + "/keypoints", "\(keypoints.count) values, expected \(t * k * 3)")
            }
            try group.writeDataset("keypoints", values: keypoints, shape: [t, k, 3])
        }
        // Attributes last: a clip without them is recognised as incomplete on resume.
        if let boxesSource { try group.setAttribute(DatasetLayout.boxesSourceAttribute, boxesSource) }
        if let missingBoxes { try group.setAttribute(DatasetLayout.boxesMissingAttribute, missingBoxes) }
        try group.setAttribute("fps", fps)
        try group.setAttribute("source", source)
        try group.setAttribute("width", width)
        try group.setAttribute("height", height)
        try writer.clipFinished(id, source: source)
    }
}
