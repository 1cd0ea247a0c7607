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

/// Draws a loss curve (raw values faint, moving average strong, log-scaled y) as a readable chart:
/// axes with tick labels, title, axis labels and a legend (Media's Plot component).
public enum LossCurve {
    public static func render(_ points: [(step: Int, value: Double)], key: String = "loss", width: Int = 720,
                              height: Int = 420) throws -> RGBImage {
        let finite = points.filter { $0.value.isFinite && $0.value > 0 }
        let k = max(1, finite.count / 20)
        var avg: [(x: Double, y: Double)] = []
        for i in finite.indices {
            let w = finite[max(0, i - k + 1)...i]
            avg.append((Double(finite[i].step), w.map(\.value).reduce(0, +) / Double(w.count)))
        }
        let blue = PlotPalette.color(0)
        var chart = LineChart(
            title: "\(key) per training step (\(finite.count) steps)", xLabel: "step", yLabel: "\(key) (log scale)",
            series: [PlotSeries(name: "\(key) per step", points: finite.map { (Double($0.step), $0.value) },
                                color: PlotPalette.faint(blue), thickness: 1),
                     PlotSeries(name: "moving average of \(k)", points: avg, color: blue, thickness: 2)],
            logY: true)
        (chart.width, chart.height) = (width, height)
        return chart.render()
    }

    public static func write(metrics url: URL, key: String = "loss", to png: URL) throws {
        let pts = MetricsLog.read(url).compactMap { r -> (step: Int, value: Double)? in
            guard let s = r["step"] as? Int, let v = r[key] as? Double else { return nil }
            return (s, v)
        }
        try ImageIO.write(try render(pts, key: key), to: png.path)
    }
}
