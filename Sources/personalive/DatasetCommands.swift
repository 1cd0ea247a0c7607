// DatasetCommands.swift — `personalive dataset synth|build|inspect` and `personalive bench loader`:
// parse and validate arguments, set up logging, call the Data target, print summaries.
import ArgumentParser
import Data
import Foundation
import Logging
import Media
import Training

struct DatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Create, build and inspect PersonaLive HDF5 datasets.",
        subcommands: [Synth.self, Build.self, Inspect.self, DatasetExport.self])

    // MARK: synth

    struct Synth: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate synthetic talking portraits with ground-truth boxes, pose and keypoints.",
            discussion: "Deterministic: the same options give the same bytes. Also saves a frame grid PNG next to the file (and <grid>_gt.png with the ground truth drawn).")

        @Option(help: "Output HDF5 file.") var out: String
        @Option(help: "Number of clips (one identity each).") var clips: Int = 64
        @Option(help: "Frames per clip.") var frames: Int = 48
        @Option(help: "Frame size in pixels (square).") var size: Int = 64
        @Option(help: "Random seed.") var seed: UInt64 = 0
        @Option(help: "Frames per second stored with the clips (sets the motion speed).") var fps: Double = 25
        @Option(help: "Fraction of clips in the validation split.") var valFraction: Double = 0.1
        @Option(help: "Head-motion amplitude (1: turns within ±30°, shifts up to 5 % of the frame; 1.5: ±45°).")
        var poseScale: Double = 1
        @Option(help: "Camera framing: the head's size × zoom (1: head and shoulders; 1.5: the face fills most of the frame).")
        var zoom: Double = 1
        @Option(help: "Where to save the frame grid PNG (default: <out>_grid.png).") var grid: String?
        @OptionGroup var global: GlobalOptions

        var config: SynthConfig {
            SynthConfig(clips: clips, frames: frames, size: size, seed: seed, fps: fps, valFraction: valFraction,
                        poseScale: poseScale, zoom: zoom)
        }

        func validate() throws {
            do {
                try config.validate()
            } catch {
                throw ValidationError("\(error)")
            }
        }

        func run() throws {
            let logger = try global.setUp(label: "dataset")
            let start = Date()
            let bar = ProgressBar(label: "synth")
            let gridPath = try SyntheticPortraits.write(to: out, config: config, gridPath: grid, logger: logger) { done, total in
                bar.update(done: done, total: total, unit: "clips")
            }
            bar.finish()
            let seconds = Date().timeIntervalSince(start)
            let (train, val) = config.splits
            print("wrote \(out): \(clips) clips × \(frames) frames at \(size)×\(size), seed \(seed) (train \(train.count), val \(val.count))")
            print(String(format: "took %.1f s (%.0f frames/s); frame grid: %@", seconds, Double(clips * frames) / seconds, gridPath))
        }
    }

    // MARK: build

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build a dataset from videos: decode, resample, measure face boxes, square-crop, resize, write clips with boxes.",
            discussion: """
                --boxes mediapipe (the default) runs MediaPipe FaceMesh on every frame (in the project's \
                Python: `make deps` installs mediapipe==0.10.14 into .venv), crops a square of 1.8× the \
                median face size around the clip's faces (kept inside the frame) and stores face, eye and mouth boxes in the \
                cropped frame's pixels. A clip with no face in more than --max-missing-faces of its frames \
                is skipped and named; other frames without a face take the nearest frame's boxes. \
                --boxes template stores the same guessed boxes in every frame (centre crop), with a \
                warning; each clip records its boxes' source (attribute boxes_source). Videos that fail to \
                decode are reported and skipped. Re-running resumes: clips already written (in the finished \
                file or in an interrupted run's partial file) are kept. The output appears only when the \
                build is complete. --crop takes 'center' or a JSON file mapping video names to \
                {"crop": [x1,y1,x2,y2], "boxes": [[face],[left eye],[right eye],[mouth]]} (boxes may also \
                be given per output frame); listed videos take their boxes from it.
                """)

        @Option(parsing: .upToNextOption, help: "Video files and/or directories (searched recursively).") var videos: [String]
        @Option(help: "Output HDF5 file.") var out: String
        @Option(help: "Output frame size (square).") var size: Int = 512
        @Option(help: "Output frame rate.") var fps: Double = 25
        @Option(help: "'center' or a boxes JSON file.") var crop: String = "center"
        @Option(help: "Where boxes come from: mediapipe (FaceMesh on every frame), keypoints (needs --motion-extractor) or template (guessed; recorded as such).")
        var boxes: String = "mediapipe"
        @Option(help: "Motion-extractor checkpoint folder for --boxes keypoints (a `personalive train` motion_extractor run).")
        var motionExtractor: String?
        @Option(help: "Python with mediapipe for --boxes mediapipe (default: $PERSONALIVE_PYTHON, then .venv/bin/python).")
        var python: String?
        @Option(help: "Skip a clip when no face is found in more than this fraction of its frames.")
        var maxMissingFaces: Double = 0.2
        @Option(help: "Fraction of clips in the validation split.") var valFraction: Double = 0.1
        @OptionGroup var global: GlobalOptions

        var boxesSource: BoxesSource? {
            [BoxesSource.mediapipe, .keypoints, .template].first { $0.rawValue == boxes }
        }

        func validate() throws {
            guard !videos.isEmpty else { throw ValidationError("--videos needs at least one file or directory") }
            guard size >= 16 else { throw ValidationError("--size must be at least 16") }
            guard fps > 0 else { throw ValidationError("--fps must be positive") }
            guard boxesSource != nil else { throw ValidationError("--boxes must be mediapipe, keypoints or template, got '\(boxes)'") }
            if boxesSource == .keypoints && motionExtractor == nil {
                throw ValidationError("--boxes keypoints needs --motion-extractor CHECKPOINT_FOLDER")
            }
            if boxesSource != .keypoints && motionExtractor != nil {
                throw ValidationError("--motion-extractor is only used with --boxes keypoints")
            }
            guard (0...1).contains(maxMissingFaces) else { throw ValidationError("--max-missing-faces must be in 0...1") }
            if crop != "center" && !FileManager.default.fileExists(atPath: crop) {
                throw ValidationError("--crop must be 'center' or an existing boxes JSON file, got '\(crop)'")
            }
        }

        func run() throws {
            let logger = try global.setUp(label: "dataset")
            let source = boxesSource!
            let options = BuildOptions(inputs: videos, output: out, boxes: source, size: size, fps: fps,
                                       crop: crop == "center" ? .center : .boxes(crop), valFraction: valFraction,
                                       maxMissingFaces: maxMissingFaces)
            let detector: FaceBoxDetector?
            switch source {
            case .mediapipe: detector = try MediaPipeFaceMesh(python: python, logger: logger)
            case .keypoints: detector = try KeypointFaceBoxes(checkpoint: motionExtractor!, logger: logger)
            default: detector = nil
            }
            let bar = ProgressBar(label: "build")
            let report = try DatasetBuilder(options: options, detector: detector, logger: logger).run { p in
                bar.update(done: p.framesDone, total: p.framesTotal, unit: "frames",
                           note: "\(p.videoIndex + 1)/\(p.videoCount) \(URL(fileURLWithPath: p.file).lastPathComponent)", eta: p.eta)
            }
            bar.finish()
            print("wrote \(out): \(report.kept.count + report.written.count) clips (\(report.written.count) new, \(report.kept.count) kept), \(report.framesWritten) new frames; train \(report.train.count), val \(report.val.count)")
            if !report.framesWithoutFace.isEmpty {
                let total = report.framesWithoutFace.values.reduce(0, +)
                let clips = report.framesWithoutFace.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                print("frames without a face (boxes from the nearest frame with one): \(total)" + (clips.isEmpty ? "" : " (\(clips.joined(separator: ", ")))"))
            }
            if !report.skipped.isEmpty {
                print("skipped \(report.skipped.count) file(s):")
                for s in report.skipped { print("  \(s.file): \(s.reason)") }
            }
        }
    }

    // MARK: inspect

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Summarise a dataset and check its layout (exit status 1 when it is invalid).")

        @Argument(help: "HDF5 dataset file.") var file: String
        @Flag(help: "List every clip.") var clips = false
        @Option(help: "Write a PNG frame grid with every frame's boxes drawn (face white, eyes and mouth yellow).")
        var grid: String?
        @Option(help: "Frames per clip in the grid.") var gridColumns: Int = 6
        @OptionGroup var global: GlobalOptions

        func run() throws {
            let logger = try global.setUp(label: "dataset")
            let f: HDF5File
            do { f = try HDF5File(path: file) } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                throw ExitCode(1)
            }
            let summary = DatasetValidator.validate(f)
            let size = ((try? FileManager.default.attributesOfItem(atPath: file)[.size]) as? Int) ?? 0
            let root = try? f.root
            let format = (try? root?.attribute("format"))?.flatMap { $0 }
            let version = (try? root?.attribute("version"))?.flatMap { $0 }
            print("file: \(file) (\(Self.bytes(size)) on disk)")
            print("format: \(format?.stringValue ?? "?") version \(version?.intValue.map(String.init) ?? "?")")
            let cs = summary.clips
            let frames = cs.map(\.frameCount)
            print("clips: \(cs.count), frames: \(frames.reduce(0, +))" + (cs.isEmpty ? "" : " (\(frames.min()!)–\(frames.max()!) per clip)"))
            if !cs.isEmpty {
                let res = Dictionary(grouping: cs, by: { "\($0.width)×\($0.height)" }).map { "\($0.key) (\($0.value.count))" }.sorted()
                let fps = Dictionary(grouping: cs, by: { $0.fps }).map { "\(Self.number($0.key)) (\($0.value.count))" }.sorted()
                print("resolution: \(res.joined(separator: ", "))")
                print("fps: \(fps.joined(separator: ", "))")
                let seconds = cs.reduce(0.0) { $0 + Double($1.frameCount) / $1.fps }
                print(String(format: "duration: %.1f s", seconds))
                print("ground truth: pose in \(cs.filter(\.hasPose).count) clips, keypoints in \(cs.filter(\.hasKeypoints).count) clips")
                let sources = Dictionary(grouping: cs, by: { $0.boxesSource ?? "unrecorded" })
                    .map { "\($0.key) (\($0.value.count))" }.sorted()
                print("boxes: \(sources.joined(separator: ", "))")
                if cs.contains(where: { $0.boxesSource == BoxesSource.template.rawValue }) {
                    print("warning: template boxes are guessed, not measured: rebuild with --boxes mediapipe")
                }
            }
            let splits = DatasetLayout.splitNames.map { "\($0) \(summary.splits[$0].map { String($0.count) } ?? "missing")" }
            print("splits: \(splits.joined(separator: ", "))")
            if clips {
                for c in cs {
                    print("  \(c.id): \(c.frameCount) frames \(c.width)×\(c.height) @ \(Self.number(c.fps)) fps, boxes \(c.boxesSource ?? "unrecorded")\(c.hasPose ? ", pose" : "")\(c.hasKeypoints ? ", keypoints" : "")  ← \(c.source)")
                }
            }
            if summary.isValid, let grid {
                let image = try DatasetGrid.render(DatasetReader(path: file, logger: logger), columns: gridColumns)
                try ImageIO.write(image, to: grid)
                print("grid: \(grid) (\(cs.count) clips × \(gridColumns) frames, boxes drawn)")
            }
            if summary.isValid {
                print("layout: OK")
            } else {
                print("layout: \(summary.problems.count) problem\(summary.problems.count == 1 ? "" : "s")")
                for p in summary.problems { print("  \(p)") }
                throw ExitCode(1)
            }
        }

        static func bytes(_ n: Int) -> String {
            let units = ["B", "KB", "MB", "GB", "TB"]
            var v = Double(n), i = 0
            while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
            return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
        }

        static func number(_ x: Double) -> String { x == x.rounded() ? String(Int(x)) : String(format: "%.3f", x) }
    }
}

// MARK: - bench loader

struct BenchLoaderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loader",
        abstract: "Data loader throughput: stage-1 pairs and stage-3 sequences at 64² and 512², and raw frame reads next to h5py.")

    @Argument(help: "HDF5 dataset file.") var file: String
    @Option(help: "Batch size.") var batch: Int = 4
    @Option(help: "Batches timed per configuration.") var steps: Int = 10
    @Option(help: "Prefetch worker threads.") var workers: Int = 2
    @Option(help: "Output sizes to time.") var sizes: [Int] = [64, 512]
    @Option(help: "Stage-3 frames per sequence.") var sampleFrames: Int = 16
    @Option(help: "Stage-3 stride between frames.") var sampleRate: Int = 4
    @Option(help: "Frames read in the raw-read comparison.") var reads: Int = 400
    @Option(help: "Python with h5py (default: $PERSONALIVE_PYTHON, then .venv/bin/python).") var python: String?
    @Option(help: "Split to sample from.") var split: String = "train"
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard batch >= 1, steps >= 1, workers >= 1, reads >= 1 else { throw ValidationError("--batch, --steps, --workers and --reads must be ≥ 1") }
        guard sizes.allSatisfy({ $0 >= 8 }) else { throw ValidationError("--sizes must be ≥ 8") }
    }

    func run() throws {
        _ = try global.setUp(label: "bench")
        let ds = try DatasetReader(path: file)
        print("dataset \(file): \(ds.clips.count) clips, \(ds.clips.map(\.frameCount).reduce(0, +)) frames; batch \(batch), \(workers) workers, \(steps) batches each")
        for size in sizes {
            let config = SamplerConfig(imageSize: size, nSampleFrames: sampleFrames, sampleRate: sampleRate, batchSize: batch, seed: 1, split: split)
            let pairs = try PairSampler(dataset: ds, config: config)
            let (pb, pf) = try Self.time(steps: steps, framesPerBatch: batch * 2) { pairs.prefetcher(startStep: 0, endStep: steps, capacity: 2 * workers, workers: workers) }
            print(String(format: "stage-1 pairs     %4d²: %7.2f batches/s  %8.1f frames/s", size, pb, pf))
            let seqs = try SequenceSampler(dataset: ds, config: config)
            let (sb, sf) = try Self.time(steps: steps, framesPerBatch: batch * (sampleFrames + 1)) { seqs.prefetcher(startStep: 0, endStep: steps, capacity: 2 * workers, workers: workers) }
            print(String(format: "stage-3 sequences %4d²: %7.2f batches/s  %8.1f frames/s", size, sb, sf))
        }
        try compareWithH5py(ds)
    }

    /// Drains a prefetcher; returns (batches/s, frames/s).
    static func time<B>(steps: Int, framesPerBatch: Int, _ make: () -> Prefetcher<B>) throws -> (Double, Double) {
        let start = Date()
        let p = make()
        var n = 0
        while try p.next() != nil { n += 1 }
        let s = Date().timeIntervalSince(start)
        return (Double(n) / s, Double(n * framesPerBatch) / s)
    }

    /// Reads the same random frames with our reader and with h5py, single-threaded, and prints both.
    func compareWithH5py(_ ds: DatasetReader) throws {
        var rng = SeededRandom(seed: 123)
        let picks: [(String, Int)] = (0..<reads).map { _ in
            let c = ds.clips[rng.below(ds.clips.count)]
            return (c.id, rng.below(c.frameCount))
        }
        let start = Date()
        var checksum = 0
        for (id, t) in picks { checksum &+= Int(try ds.frame(id, t).pixels[0]) }
        let ours = Double(reads) / Date().timeIntervalSince(start)
        print(String(format: "raw frame reads (Swift HDF5): %8.1f frames/s", ours))

        let env = ProcessInfo.processInfo.environment
        let py = python ?? env["PERSONALIVE_PYTHON"] ?? FileManager.default.currentDirectoryPath + "/.venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: py) else {
            print("h5py comparison skipped: no Python at \(py) (set --python or PERSONALIVE_PYTHON, or run `make .venv`)")
            return
        }
        let list = FileManager.default.temporaryDirectory.appendingPathComponent("bench-loader-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: list) }
        try JSONSerialization.data(withJSONObject: picks.map { [$0.0, $0.1] as [Any] }).write(to: list)
        let script = """
            import json, sys, time
            try:
                import h5py
            except Exception as e:
                print("NOH5PY", e); sys.exit(0)
            picks = json.load(open(sys.argv[2]))
            f = h5py.File(sys.argv[1], "r")
            sets = {}
            start = time.perf_counter(); s = 0
            for cid, t in picks:
                d = sets.get(cid)
                if d is None:
                    d = sets[cid] = f["clips/" + cid + "/frames"]
                s += int(d[t][0, 0, 0])
            print("RATE", len(picks) / (time.perf_counter() - start), s)
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: py)
        p.arguments = ["-c", script, file, list.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let words = out.split(whereSeparator: \.isWhitespace)
        if let i = words.firstIndex(of: "RATE"), i + 2 < words.count, let rate = Double(words[i + 1]) {
            print(String(format: "raw frame reads (h5py):       %8.1f frames/s   Swift/h5py = %.2f×", rate, ours / rate))
            if Int(words[i + 2]) != checksum { print("warning: h5py read different pixels than the Swift reader") }
        } else if words.first == "NOH5PY" {
            print("h5py comparison skipped: \(py) cannot import h5py")
        } else {
            print("h5py comparison failed: \(out.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}

// MARK: - progress display

/// A one-line progress bar with ETA on stderr (redrawn at most 10× a second; plain lines when stderr is not a terminal).
final class ProgressBar {
    let label: String
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var drew = false
    private let tty = isatty(STDERR_FILENO) != 0
    private var lastPlainPercent = -10

    init(label: String) { self.label = label }

    func update(done: Int, total: Int, unit: String, note: String = "", eta given: Double? = nil) {
        let now = Date()
        let frac = total > 0 ? min(1, Double(done) / Double(total)) : 0
        let elapsed = now.timeIntervalSince(start)
        let eta = given ?? (done > 0 ? elapsed * Double(max(0, total - done)) / Double(done) : nil)
        let etaText = eta.map { String(format: "ETA %d:%02d", Int($0) / 60, Int($0) % 60) } ?? "ETA --:--"
        if tty {
            guard now.timeIntervalSince(lastDraw) > 0.1 || done >= total else { return }
            lastDraw = now
            let width = 28
            let filled = Int(frac * Double(width))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let line = String(format: "\r%@ [%@] %3.0f%% %d/%d %@  %@  %@\u{1B}[K", label, bar, frac * 100, done, total, unit, etaText, note)
            FileHandle.standardError.write(Data(line.utf8))
            drew = true
        } else {
            let pct = Int(frac * 100)
            guard pct >= lastPlainPercent + 10 || done >= total else { return }
            lastPlainPercent = pct
            FileHandle.standardError.write(Data("\(label): \(pct)% (\(done)/\(total) \(unit)) \(etaText) \(note)\n".utf8))
        }
    }

    func finish() {
        if drew { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
