// MediaPipeFaceMesh.swift — face, eye and mouth boxes from MediaPipe FaceMesh (468 landmarks,
// static_image_mode, one face), as the reference's data preparation computes them. MediaPipe is a
// Python package (the `mediapipe==0.10.14` wheel carries its face models; `make deps` installs it
// into .venv), so a small helper script shipped here runs in one Python process per build: frames
// go to it over stdin as raw RGB, landmarks come back over stdout as float32 pixels, and the boxes
// are made here (`FaceMeshBoxes`). Its stderr goes to a temporary file whose tail every error quotes.
import Foundation
import Logging
import Media

public final class MediaPipeFaceMesh: FaceBoxDetector {
    public let source = BoxesSource.mediapipe
    public let python: String
    /// Frames larger than this on their long side are shrunk before detection (landmarks are
    /// scaled back): FaceMesh works on a 192² face crop, so detail beyond this buys nothing.
    public var maxSide = 720

    private let process: Process
    private let stdin: FileHandle
    private let stdout: FileHandle
    private let stderrURL: URL
    private let logger: Logger
    private var closed = false

    /// The helper: reads (uint32 width, uint32 height, width·height·3 bytes) per frame until EOF or
    /// a zero width; writes int32 found + 468 × (x, y) float32 pixels per frame. "MPOK" once
    /// FaceMesh is loaded.
    static let script = #"""
        import os, struct, sys
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            import numpy as np
            import mediapipe as mp
        except Exception as e:
            sys.stderr.write("cannot import mediapipe: %r\n" % (e,))
            sys.exit(3)
        inp, out = sys.stdin.buffer, sys.stdout.buffer
        def read(n):
            b = bytearray()
            while len(b) < n:
                c = inp.read(n - len(b))
                if not c:
                    return None
                b += c
            return bytes(b)
        N = 468
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
            out.write(b"MPOK"); out.flush()
            while True:
                head = read(8)
                if head is None:
                    break
                w, h = struct.unpack("<II", head)
                if w == 0:
                    break
                px = read(w * h * 3)
                if px is None:
                    break
                r = mesh.process(np.frombuffer(px, np.uint8).reshape(h, w, 3))
                if r.multi_face_landmarks:
                    lm = r.multi_face_landmarks[0].landmark
                    xy = np.array([(p.x * w, p.y * h) for p in lm[:N]], np.float32)
                    out.write(struct.pack("<i", 1) + xy.tobytes())
                else:
                    out.write(struct.pack("<i", 0) + bytes(N * 8))
                out.flush()
        """#

    /// The Python to run: `explicit`, else $PERSONALIVE_PYTHON, else .venv/bin/python in the current
    /// directory or beside the package the executable was built in, else python3 on PATH.
    public static func findPython(_ explicit: String? = nil) -> String {
        if let explicit { return explicit }
        if let env = ProcessInfo.processInfo.environment["PERSONALIVE_PYTHON"], !env.isEmpty { return env }
        var candidates = [FileManager.default.currentDirectoryPath + "/.venv/bin/python"]
        // <package>/.build*/debug/personalive → <package>/.venv/bin/python
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(dir.appendingPathComponent(".venv/bin/python").path)
            dir = dir.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? "python3"
    }

    /// Starts the helper and waits until FaceMesh is loaded; an error says why it could not start
    /// (no such Python, mediapipe not installed) and how to fix it.
    public init(python: String? = nil, logger: Logger = Logger(label: "personalive.data")) throws {
        self.python = Self.findPython(python)
        self.logger = logger
        signal(SIGPIPE, SIG_IGN)  // a dead helper must be an error here, not a killed process
        stderrURL = FileManager.default.temporaryDirectory.appendingPathComponent("personalive-facemesh-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let p = Process()
        if self.python.contains("/") {
            p.executableURL = URL(fileURLWithPath: self.python)
            p.arguments = ["-c", Self.script]
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [self.python, "-c", Self.script]
        }
        let inPipe = Pipe(), outPipe = Pipe()
        p.standardInput = inPipe
        p.standardOutput = outPipe
        p.standardError = try FileHandle(forWritingTo: stderrURL)
        do { try p.run() } catch {
            try? FileManager.default.removeItem(at: stderrURL)
            throw BuildError("--boxes mediapipe: cannot run \(self.python) (\(error)); run `make deps` or pass --python")
        }
        process = p
        stdin = inPipe.fileHandleForWriting
        stdout = outPipe.fileHandleForReading
        let magic = try? readExactly(4)
        guard let magic, magic == Data("MPOK".utf8) else {
            p.waitUntilExit()
            let why = stderrTail()
            try? FileManager.default.removeItem(at: stderrURL)
            closed = true
            throw BuildError("--boxes mediapipe: \(self.python) could not start MediaPipe FaceMesh (exit \(p.terminationStatus)): \(why)"
                             + " — `make deps` installs mediapipe==0.10.14 into .venv; or choose --boxes keypoints or --boxes template")
        }
        logger.info("MediaPipe FaceMesh running in \(self.python)")
    }

    deinit { close() }

    /// Ends the helper (idempotent).
    public func close() {
        guard !closed else { return }
        closed = true
        try? stdin.close()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: stderrURL)
    }

    public func detect(_ image: RGBImage) throws -> FaceBoxes? {
        guard !closed else { throw BuildError("MediaPipe FaceMesh helper is closed") }
        let long = max(image.width, image.height)
        var input = image
        var scale: Float = 1
        if long > maxSide {
            scale = Float(long) / Float(maxSide)
            input = try image.resized(width: max(1, Int((Float(image.width) / scale).rounded())),
                                      height: max(1, Int((Float(image.height) / scale).rounded())), filter: .area)
        }
        var header = Data(count: 8)
        header.withUnsafeMutableBytes { b in
            b.storeBytes(of: UInt32(input.width).littleEndian, toByteOffset: 0, as: UInt32.self)
            b.storeBytes(of: UInt32(input.height).littleEndian, toByteOffset: 4, as: UInt32.self)
        }
        try writeAll(header)
        try input.pixels.withUnsafeBytes { try writeAll(Data($0)) }
        let reply = try readExactly(4 + FaceMeshBoxes.landmarkCount * 8)
        let found = reply.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: Int32.self)) }
        guard found == 1 else { return nil }
        let xy: [Float] = reply.withUnsafeBytes { raw in
            (0..<(2 * FaceMeshBoxes.landmarkCount)).map {
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 + 4 * $0, as: UInt32.self))) * scale
            }
        }
        // The reference (mediapipe on the decoded frame) then crops with these boxes.
        return try FaceMeshBoxes.boxes(landmarks: xy)
    }

    private func stderrTail() -> String {
        let text = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
        let lines = text.split(separator: "\n").filter { !$0.hasPrefix("W0000") && !$0.hasPrefix("I0000") }
        return lines.suffix(5).joined(separator: " | ")
    }

    private func failure(_ what: String) -> BuildError {
        BuildError("MediaPipe FaceMesh helper (\(python)) \(what): \(stderrTail())")
    }

    private func writeAll(_ data: Data) throws {
        let fd = stdin.fileDescriptor
        try data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw failure("stopped reading frames (\(String(cString: strerror(errno))))") }
                off += n
            }
        }
    }

    private func readExactly(_ count: Int) throws -> Data {
        var data = Data(count: count)
        let fd = stdout.fileDescriptor
        try data.withUnsafeMutableBytes { raw in
            var off = 0
            while off < count {
                let n = read(fd, raw.baseAddress! + off, count - off)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw failure(n == 0 ? "ended" : "read failed (\(String(cString: strerror(errno))))") }
                off += n
            }
        }
        return data
    }
}
