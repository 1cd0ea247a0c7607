// TestSupport.swift — shared helpers for the Media/Data tests: temporary directories, synthetic
// frames, the shared real-media folder and the Python interpreter used for h5py interop.
import Foundation
import Media

enum TestSupport {
    /// A fresh temporary directory, removed when the returned object is released.
    final class TempDir {
        let path: String
        init(_ tag: String = "mdtest") {
            path = NSTemporaryDirectory() + "\(tag)-\(UUID().uuidString)"
            try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        func file(_ name: String) -> String { path + "/" + name }
        func contents() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    /// The package root (two levels above this file's folder).
    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// ../shared/media next to the package, or $PERSONALIVE_MEDIA.
    static var mediaDir: String? {
        let env = ProcessInfo.processInfo.environment["PERSONALIVE_MEDIA"]
        let candidates = [env, packageRoot + "/../shared/media", "/work/shared/media"].compactMap { $0 }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/README.md") }
    }

    /// $PERSONALIVE_PYTHON, or .venv/bin/python in the package root.
    static var python: String? {
        let p = ProcessInfo.processInfo.environment["PERSONALIVE_PYTHON"] ?? packageRoot + "/.venv/bin/python"
        return FileManager.default.isExecutableFile(atPath: p) ? p : nil
    }

    /// Runs a process and returns (status, stdout+stderr).
    @discardableResult
    static func run(_ exe: String, _ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Finds an executable on PATH.
    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// A smooth moving pattern: frame `t` of a clip, distinct per frame, friendly to H.264.
    static func pattern(width: Int, height: Int, t: Int) -> RGBImage {
        var px = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let o = (y * width + x) * 3
                let fx = Double(x) / Double(width), fy = Double(y) / Double(height)
                px[o] = UInt8(40 + 170 * fx)
                px[o + 1] = UInt8(40 + 170 * fy)
                let cx = 0.2 + 0.6 * Double(t % 50) / 50
                let d = (fx - cx) * (fx - cx) + (fy - 0.5) * (fy - 0.5)
                px[o + 2] = d < 0.02 ? 230 : 60
            }
        }
        return try! RGBImage(width: width, height: height, pixels: px)
    }

    static func meanAbsError(_ a: RGBImage, _ b: RGBImage) -> Double {
        precondition(a.pixels.count == b.pixels.count)
        var s = 0
        for i in 0..<a.pixels.count { s += abs(Int(a.pixels[i]) - Int(b.pixels[i])) }
        return Double(s) / Double(a.pixels.count)
    }
}
