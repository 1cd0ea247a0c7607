// DatasetBuilder.swift — `personalive dataset build`: decodes videos, resamples them to a fixed
// frame rate, measures face, eye and mouth boxes on every frame with a face-landmark model
// (`FaceBoxDetector`: MediaPipe FaceMesh or the motion extractor's keypoints), crops a square around
// the clip's faces, resizes and writes clips with their boxes (in the cropped frame's pixels) and
// the boxes' source into the HDF5 layout. Boxes may instead come from a JSON file, or, only when
// asked for, from a fixed template (recorded as such, with a warning). A video that fails to decode,
// or shows no face in too many frames, is reported and skipped; the build goes on. The output is
// resumable (clips already written are kept on a re-run) and is renamed into place only when complete.
import Foundation
import Logging
import Media

public struct BuildOptions: Sendable {
    public enum Crop: Sendable, Equatable {
        /// The largest centred square; boxes from `FaceBoxes.template` (a face-centred portrait).
        case center
        /// Per-video crops and boxes from a JSON file (see `BoxesFile`).
        case boxes(String)
    }

    public var inputs: [String]
    public var output: String
    /// Where the boxes of videos not listed in a boxes file come from: `.mediapipe` or
    /// `.keypoints` (measured by the builder's detector) or `.template` (guessed).
    public var boxes: BoxesSource
    public var size: Int
    public var fps: Double
    public var crop: Crop
    public var valFraction: Double
    /// A clip with no face in more than this fraction of its frames is skipped.
    public var maxMissingFaces: Double
    /// Side of the square crop around measured faces, in face-box sizes (as for boxes files).
    public var cropScale: Float

    public init(inputs: [String], output: String, boxes: BoxesSource, size: Int = 512, fps: Double = 25, crop: Crop = .center,
                valFraction: Double = 0.1, maxMissingFaces: Double = 0.2, cropScale: Float = 1.8) {
        self.inputs = inputs; self.output = output; self.boxes = boxes; self.size = size; self.fps = fps; self.crop = crop
        self.valFraction = valFraction; self.maxMissingFaces = maxMissingFaces; self.cropScale = cropScale
    }
}

public struct BuildProgress: Sendable {
    public var videoIndex: Int
    public var videoCount: Int
    public var file: String
    public var framesDone: Int
    /// Frames expected in total (from container metadata; may be off by a few).
    public var framesTotal: Int
    public var elapsed: Double

    /// Seconds left at the current rate, or nil before the first frames.
    public var eta: Double? {
        guard framesDone > 0, elapsed > 0 else { return nil }
        return Double(max(0, framesTotal - framesDone)) * elapsed / Double(framesDone)
    }
}

public struct BuildReport: Sendable {
    public struct Skipped: Sendable {
        public var file: String
        public var reason: String
    }
    /// Clip ids written in this run.
    public var written: [String] = []
    /// Clip ids kept from a previous (interrupted or finished) run.
    public var kept: [String] = []
    public var skipped: [Skipped] = []
    public var framesWritten = 0
    /// Per clip written with measured boxes: frames where no face was found (their boxes copied
    /// from the nearest frame with one).
    public var framesWithoutFace: [String: Int] = [:]
    public var train: [String] = []
    public var val: [String] = []
}

/// Crops and boxes given per video in a JSON file:
///
///     { "d0.mp4": { "crop": [x1, y1, x2, y2], "boxes": [[face], [left eye], [right eye], [mouth]] },
///       "d3.mp4": { "boxes": [ [[face], [left eye], [right eye], [mouth]], ... one entry per output frame ] } }
///
/// Keys are file names or full paths; coordinates are source-video pixels. Without "crop" the crop
/// is a square of 1.8× the (first) face box size centred on it (black where it leaves the frame).
/// An entry with a crop but no boxes gets its boxes from `--boxes` inside that crop. Videos not
/// listed get crop and boxes from `--boxes`.
public struct BoxesFile: Sendable {
    public struct Entry: Sendable {
        public var crop: Box?
        /// One FaceBoxes for the whole video, or one per output frame.
        public var boxes: [FaceBoxes]
    }
    public var entries: [String: Entry]

    public init(path: String) throws {
        let data: Foundation.Data
        do { data = try Foundation.Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw BuildError("\(path): cannot read boxes file (\(error.localizedDescription))")
        }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw BuildError("\(path): expected a JSON object mapping video names to {\"crop\": [...], \"boxes\": [...]}")
        }
        func box(_ v: Any?, _ key: String) throws -> Box {
            guard let a = v as? [Double], a.count == 4, a[2] > a[0], a[3] > a[1] else {
                throw BuildError("\(path): \(key): expected [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
            }
            return Box(x1: Float(a[0]), y1: Float(a[1]), x2: Float(a[2]), y2: Float(a[3]))
        }
        func four(_ v: Any?, _ key: String) throws -> FaceBoxes {
            guard let a = v as? [Any], a.count == 4 else { throw BuildError("\(path): \(key): expected 4 boxes (face, left eye, right eye, mouth)") }
            return FaceBoxes(face: try box(a[0], key + "[0]"), leftEye: try box(a[1], key + "[1]"),
                             rightEye: try box(a[2], key + "[2]"), mouth: try box(a[3], key + "[3]"))
        }
        var entries: [String: Entry] = [:]
        for (name, value) in root {
            guard let obj = value as? [String: Any] else { throw BuildError("\(path): \(name): expected an object") }
            let crop = try obj["crop"].map { try box($0, "\(name).crop") }
            var boxes: [FaceBoxes] = []
            if let b = obj["boxes"] as? [Any], let firstItem = b.first {
                if (firstItem as? [Any])?.first is [Any] {
                    boxes = try b.enumerated().map { try four($1, "\(name).boxes[\($0)]") }
                } else {
                    boxes = [try four(b, "\(name).boxes")]
                }
            } else if obj["boxes"] != nil {
                throw BuildError("\(path): \(name).boxes: expected 4 boxes or a list of them per frame")
            }
            guard crop != nil || !boxes.isEmpty else { throw BuildError("\(path): \(name): needs \"crop\" or \"boxes\"") }
            entries[name] = Entry(crop: crop, boxes: boxes)
        }
        self.entries = entries
    }

    public func entry(for video: String) -> Entry? {
        entries[video] ?? entries[URL(fileURLWithPath: video).lastPathComponent] ?? entries[URL(fileURLWithPath: video).standardizedFileURL.path]
    }
}

public struct BuildError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

public final class DatasetBuilder {
    public static let videoExtensions: Set<String> = ["mp4", "mov", "mkv", "avi", "webm", "m4v", "mpg", "mpeg", "flv", "wmv", "ts"]

    public let options: BuildOptions
    private let detector: FaceBoxDetector?
    private let logger: Logger

    /// `detector` measures the boxes when `options.boxes` is `.mediapipe` or `.keypoints` (and must
    /// be of that source); none is needed for `.template`.
    public init(options: BuildOptions, detector: FaceBoxDetector? = nil, logger: Logger = Logger(label: "personalive.data")) throws {
        guard options.size >= 16 else { throw BuildError("--size must be at least 16, got \(options.size)") }
        guard options.fps > 0 else { throw BuildError("--fps must be positive, got \(options.fps)") }
        guard (0...1).contains(options.valFraction) else { throw BuildError("val fraction must be in 0...1, got \(options.valFraction)") }
        guard (0...1).contains(options.maxMissingFaces) else {
            throw BuildError("--max-missing-faces must be in 0...1, got \(options.maxMissingFaces)")
        }
        guard options.cropScale > 0 else { throw BuildError("crop scale must be positive, got \(options.cropScale)") }
        switch options.boxes {
        case .mediapipe, .keypoints:
            guard let detector else { throw BuildError("--boxes \(options.boxes.rawValue) needs a face-box detector") }
            guard detector.source == options.boxes else {
                throw BuildError("--boxes \(options.boxes.rawValue) given a \(detector.source.rawValue) detector")
            }
        case .template: break
        case .file, .synthetic:
            throw BuildError("--boxes takes mediapipe, keypoints or template (boxes files come with --crop FILE)")
        }
        self.options = options
        self.detector = detector
        self.logger = logger
    }

    /// Files given directly plus video files found (recursively, sorted) in given directories.
    public static func collectVideos(_ inputs: [String]) throws -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for input in inputs {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: input, isDirectory: &isDir) else { throw BuildError("\(input): no such file or directory") }
            if !isDir.boolValue { out.append(input); continue }
            guard let e = fm.enumerator(atPath: input) else { throw BuildError("\(input): cannot list directory") }
            var found: [String] = []
            while let rel = e.nextObject() as? String {
                if videoExtensions.contains(URL(fileURLWithPath: rel).pathExtension.lowercased()) {
                    found.append((input as NSString).appendingPathComponent(rel))
                }
            }
            out += found.sorted()
        }
        return out
    }

    /// A clip id from a file name: letters, digits, '-' and '_' kept, the rest replaced by '_'.
    public static func clipID(for file: String) -> String {
        let stem = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        let cleaned = String(stem.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_" ? Character($0) : "_" })
        return cleaned.isEmpty || cleaned.hasPrefix(".") ? "clip" : cleaned
    }

    /// FNV-1a, stable across runs and platforms (Swift's Hasher is seeded per process).
    static func stableHash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }

    /// Deterministic split: a clip goes to val when its id hashes below the fraction (stable when
    /// clips are added later); at least one val clip when there are two or more.
    public static func splits(_ ids: [String], valFraction: Double) -> (train: [String], val: [String]) {
        let sorted = ids.sorted()
        var val = sorted.filter { Double(stableHash($0) % 10_000) < valFraction * 10_000 }
        if val.count == sorted.count && sorted.count > 0 { val.removeLast() }
        if val.isEmpty && sorted.count >= 2 && valFraction > 0 { val = [sorted.last!] }
        let v = Set(val)
        return (sorted.filter { !v.contains($0) }, val)
    }

    public func run(progress: ((BuildProgress) -> Void)? = nil) throws -> BuildReport {
        let videos = try DatasetBuilder.collectVideos(options.inputs)
        guard !videos.isEmpty else { throw BuildError("no videos found in \(options.inputs.joined(separator: ", "))") }
        let boxesFile: BoxesFile? = try {
            if case .boxes(let p) = options.crop { return try BoxesFile(path: p) }
            return nil
        }()
        if options.boxes == .template {
            logger.warning("--boxes template: every frame gets the same guessed face/eye/mouth boxes (recorded as boxes_source=template); the masked losses and the motion encoder's face crop will use them")
        }
        let writer = try DatasetWriter(path: options.output, resumable: true, logger: logger)
        var report = BuildReport()
        report.kept = writer.clipIDs
        let doneSources = Set(writer.clipSources.values)

        // Frame estimates for the progress bar (cheap: container metadata only).
        var estimates: [Int] = []
        for v in videos {
            let n = (try? VideoReader(path: v, logger: logger)).flatMap { try? $0.resampledFrameCount(fps: options.fps, exact: false) } ?? 0
            estimates.append(n)
        }
        let total = estimates.reduce(0, +)
        let start = Date()
        var framesDone = 0
        for (i, video) in videos.enumerated() {
            let source = URL(fileURLWithPath: video).standardizedFileURL.path
            if doneSources.contains(source) {
                framesDone += estimates[i]
                logger.info("\(video): already in the dataset, kept")
                continue
            }
            var id = DatasetBuilder.clipID(for: video)
            var k = 2
            while writer.contains(id) { id = "\(DatasetBuilder.clipID(for: video))_\(k)"; k += 1 }
            do {
                let (n, missing) = try addVideo(video, source: source, id: id, writer: writer, entry: boxesFile?.entry(for: video)) { f in
                    progress?(BuildProgress(videoIndex: i, videoCount: videos.count, file: video, framesDone: framesDone + f,
                                            framesTotal: total, elapsed: Date().timeIntervalSince(start)))
                }
                framesDone += n
                report.written.append(id)
                report.framesWritten += n
                if let missing { report.framesWithoutFace[id] = missing }
                logger.info("\(video): \(n) frames → clip \(id)")
            } catch {
                try? writer.removeClip(id)
                framesDone += estimates[i]
                report.skipped.append(.init(file: video, reason: "\(error)"))
                logger.warning("skipping \(video): \(error)")
            }
        }
        let all = writer.clipIDs
        guard !all.isEmpty else {
            throw BuildError("no video could be decoded; nothing written (\(report.skipped.map { "\($0.file): \($0.reason)" }.joined(separator: "; ")))")
        }
        let (train, val) = DatasetBuilder.splits(all, valFraction: options.valFraction)
        try writer.finish(train: train, val: val)
        report.train = train
        report.val = val
        return report
    }

    /// Decodes one video into a clip; returns its frame count and, with measured boxes, the number
    /// of frames without a face.
    private func addVideo(_ video: String, source: String, id: String, writer: DatasetWriter, entry: BoxesFile.Entry?,
                          progress: (Int) -> Void) throws -> (frames: Int, missing: Int?) {
        let size = options.size
        // The square crop in source pixels, and the boxes per output frame in source pixels
        // (nil: the template, already in output pixels).
        var crop: Box
        var sourceBoxes: [FaceBoxes]?
        let boxesSource: BoxesSource
        var missing: Int?
        var passes = 1
        if let entry, let first = entry.boxes.first {
            boxesSource = .file
            sourceBoxes = entry.boxes
            if let c = entry.crop {
                crop = c
            } else {
                let face = first.face
                let side = options.cropScale * max(face.width, face.height)
                crop = Box(x1: face.centerX - side / 2, y1: face.centerY - side / 2, x2: face.centerX + side / 2, y2: face.centerY + side / 2)
            }
        } else if options.boxes == .template {
            boxesSource = .template
            if let c = entry?.crop {
                crop = c
            } else {
                let reader = try VideoReader(path: video, logger: logger)
                let side = Float(min(reader.width, reader.height))
                let x = Float((reader.width - Int(side)) / 2), y = Float((reader.height - Int(side)) / 2)
                crop = Box(x1: x, y1: y, x2: x + side, y2: y + side)
            }
        } else {
            // Pass 1: measure every frame at the output frame rate.
            guard let detector else { throw BuildError("--boxes \(options.boxes.rawValue) needs a face-box detector") }
            boxesSource = detector.source
            passes = 2
            var detected: [FaceBoxes?] = []
            let first = try VideoReader(path: video, logger: logger)
            try first.forEachFrame(fps: options.fps) { t, frame in
                detected.append(try detector.detect(frame))
                if t % 8 == 0 { progress((t + 1) / 2) }
                return true
            }
            let found = DetectedBoxes(frames: detected)
            let t = detected.count
            guard t > 0 else { throw BuildError("\(video): contains no video frames") }
            let allowed = Int((options.maxMissingFaces * Double(t)).rounded(.down))
            guard found.missing <= allowed, let filled = found.filled(), let square = found.squareCrop(scale: options.cropScale, width: first.width, height: first.height) else {
                throw BuildError("\(video): no face found in \(found.missing) of \(t) frames (\(boxesSource.rawValue)); at most \(allowed) allowed (--max-missing-faces \(options.maxMissingFaces))")
            }
            if found.missing > 0 {
                let first = detected.indices.filter { detected[$0] == nil }.prefix(8).map(String.init).joined(separator: ", ")
                logger.warning("\(video): no face found in \(found.missing) of \(t) frames (\(first)\(found.missing > 8 ? ", …" : "")); their boxes are copied from the nearest frame with a face")
            }
            missing = found.missing
            sourceBoxes = filled
            crop = entry?.crop ?? square
        }

        let reader = try VideoReader(path: video, logger: logger)
        let sx = Float(size) / crop.width, sy = Float(size) / crop.height
        let shrinking = crop.width > Float(size)
        let filter: ResizeFilter = shrinking ? .area : .bicubic
        let appender = try writer.beginClip(id: id, width: size, height: size, fps: options.fps, source: source)
        let done = passes == 2 ? (sourceBoxes?.count ?? 0) / 2 : 0
        try reader.forEachFrame(fps: options.fps) { t, frame in
            let out = try frame.resampled(x1: Double(crop.x1), y1: Double(crop.y1), x2: Double(crop.x2), y2: Double(crop.y2),
                                          width: size, height: size, filter: filter)
            try appender.appendFrame(out)
            if t % 8 == 0 { progress(done + (t + 1) / passes) }
            return true
        }
        let t = appender.frameCount
        guard t > 0 else { throw BuildError("\(video): contains no video frames") }
        var boxes: [Float] = []
        boxes.reserveCapacity(t * 16)
        if let given = sourceBoxes {
            guard given.count == 1 || given.count == t else {
                let what = boxesSource == .file ? "the boxes file gives" : "measuring found"
                throw BuildError("\(video): \(what) \(given.count) frames of boxes, the video has \(t) frames at \(options.fps) fps")
            }
            for i in 0..<t {
                let b = given[given.count == 1 ? 0 : i]
                boxes += b.transformed(sx: sx, sy: sy, dx: -crop.x1 * sx, dy: -crop.y1 * sy).clamped(width: Float(size), height: Float(size)).flat
            }
        } else {
            let b = FaceBoxes.template(size: size).flat
            for _ in 0..<t { boxes += b }
        }
        try appender.finish(boxes: boxes, boxesSource: boxesSource.rawValue, missingBoxes: missing)
        progress(t)
        return (t, missing)
    }
}
