// Metrics.swift — `metrics.jsonl` (one JSON object per step, like a tracker's scalar log) and
// the loss-curve PNG refreshed at each validation.
import Foundation
import Media

public final class MetricsLog {
    public let url: URL
    private var handle: FileHandle?

    public init(url: URL) throws {
        self.url = url
        if !FileManager.default.fileExists(atPath: url.path) {
            FileManager.default.createFile(atPath: url.path, contents: nil)
        }
        handle = try FileHandle(forWritingTo: url)
        try handle?.seekToEnd()
    }

    deinit { try? handle?.close() }

    /// Drops lines of steps after `step` (written by a run that died before its next checkpoint),
    /// so a resumed run's log has each step once.
    public func truncate(after step: Int) throws {
        try handle?.close()
        let lines = (try? String(contentsOf: url, encoding: .utf8))?.split(separator: "\n") ?? []
        let kept = lines.filter { line in
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = obj["step"] as? Int else { return false }
            return s <= step
        }
        try (kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).write(to: url, atomically: true, encoding: .utf8)
        handle = try FileHandle(forWritingTo: url)
        try handle?.seekToEnd()
    }

    public func append(_ record: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        handle?.write(data + Data("\n".utf8))
    }

    /// All records in the file.
    public static func read(_ url: URL) -> [[String: Any]] {
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
}

/// Draws a loss curve (raw values faint, moving average strong, log-scaled y) as a PNG.
public enum LossCurve {
    public static func render(_ points: [(step: Int, value: Double)], width: Int = 640, height: Int = 360) throws -> RGBImage {
        var img = RGBImage(width: width, height: height, fill: (255, 255, 255))
        let finite = points.filter { $0.value.isFinite && $0.value > 0 }
        let margin = 30
        func put(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
            guard x >= 0, y >= 0, x < width, y < height else { return }
            let o = (y * width + x) * 3
            img.pixels[o] = c.0; img.pixels[o + 1] = c.1; img.pixels[o + 2] = c.2
        }
        // axes and a light grid at each decade
        for x in margin..<(width - margin) { put(x, height - margin, (0, 0, 0)) }
        for y in margin..<(height - margin) { put(margin, y, (0, 0, 0)) }
        guard finite.count >= 2 else { return img }
        let lo = log10(finite.map(\.value).min()!), hi = log10(finite.map(\.value).max()!)
        let span = max(hi - lo, 1e-6)
        let s0 = Double(finite.first!.step), s1 = Double(max(finite.last!.step, finite.first!.step + 1))
        func px(_ step: Int) -> Int { margin + Int((Double(step) - s0) / (s1 - s0) * Double(width - 2 * margin - 1)) }
        func py(_ v: Double) -> Int { height - margin - 1 - Int((log10(v) - lo) / span * Double(height - 2 * margin - 1)) }
        var decade = floor(lo)
        while decade <= ceil(hi) {
            if decade >= lo && decade <= hi {
                let y = py(pow(10, decade))
                for x in stride(from: margin, to: width - margin, by: 4) { put(x, y, (200, 200, 200)) }
            }
            decade += 1
        }
        func line(_ a: (Int, Int), _ b: (Int, Int), _ c: (UInt8, UInt8, UInt8)) {
            let n = max(abs(b.0 - a.0), abs(b.1 - a.1), 1)
            for i in 0...n {
                put(a.0 + (b.0 - a.0) * i / n, a.1 + (b.1 - a.1) * i / n, c)
            }
        }
        for (a, b) in zip(finite, finite.dropFirst()) {
            line((px(a.step), py(a.value)), (px(b.step), py(b.value)), (170, 190, 230))
        }
        let k = max(1, finite.count / 20)
        var avg: [(Int, Double)] = []
        for i in finite.indices {
            let w = finite[max(0, i - k + 1)...i]
            avg.append((finite[i].step, w.map(\.value).reduce(0, +) / Double(w.count)))
        }
        for (a, b) in zip(avg, avg.dropFirst()) {
            line((px(a.0), py(a.1)), (px(b.0), py(b.1)), (20, 60, 200))
            line((px(a.0), py(a.1) + 1), (px(b.0), py(b.1) + 1), (20, 60, 200))
        }
        return img
    }

    public static func write(metrics url: URL, key: String = "loss", to png: URL) throws {
        let pts = MetricsLog.read(url).compactMap { r -> (step: Int, value: Double)? in
            guard let s = r["step"] as? Int, let v = r[key] as? Double else { return nil }
            return (s, v)
        }
        try ImageIO.write(try render(pts), to: png.path)
    }
}
