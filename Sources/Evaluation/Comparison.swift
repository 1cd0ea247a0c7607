// Comparison.swift — `evaluate --compare DIR…`: one table and one picture over several evaluations
// (e.g. the stage-1 model at 20 steps, stage 2 at 4 steps, the stage-3 stream), read back from
// their metrics.json. The picture stacks one bar panel per metric (each with its own axis and
// unit), evaluations side by side in each.
import Foundation
import Logging
import Media

public struct EvaluationSummary {
    public let directory: String
    public let label: String
    public let mode: String
    public let model: String?
    public let overall: [String: Double]
    public let unavailable: [String: String]
    public let fps: Double?
    public let chunkMedian: Double?

    /// Reads `dir/metrics.json`; errors name the file and the missing key.
    public init(directory dir: String) throws {
        let path = (dir as NSString).appendingPathComponent("metrics.json")
        guard let data = FileManager.default.contents(atPath: path) else { throw EvaluationError("\(path): not found (not an evaluation folder?)") }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              obj["format"] as? String == "personalive-evaluation" else {
            throw EvaluationError("\(path): not a personalive evaluation (no \"format\": \"personalive-evaluation\")")
        }
        guard let overall = obj["overall"] as? [String: Any] else { throw EvaluationError("\(path): no \"overall\" object") }
        directory = dir
        label = obj["label"] as? String ?? (dir as NSString).lastPathComponent
        mode = obj["mode"] as? String ?? "?"
        model = obj["model"] as? String
        self.overall = overall.compactMapValues { $0 as? Double }
        unavailable = obj["unavailable"] as? [String: String] ?? [:]
        let timing = obj["timing"] as? [String: Any] ?? [:]
        fps = timing["fps"] as? Double
        chunkMedian = timing["chunk_seconds_median"] as? Double
    }
}

public enum Comparison {
    /// Writes report.md and comparison.png into `path` (atomically); returns the markdown table.
    @discardableResult
    public static func write(_ runs: [EvaluationSummary], command: String, to path: String, logger: Logger) throws -> String {
        guard runs.count >= 1 else { throw EvaluationError("--compare needs evaluation folders") }
        let keys = MetricInfo.all.map(\.key).filter { k in runs.contains { $0.overall[k] != nil } }
        var s = "# Comparison of \(runs.count) evaluations\n\n- command: `\(command)`\n\n"
        s += EvaluationReport.header(["evaluation", "mode", "model"] + keys.compactMap { MetricInfo.named($0)?.name }
                                     + ["FPS", "chunk latency (median, ms)"])
        for r in runs {
            let values = keys.map { k in r.overall[k].map { EvaluationReport.fmt($0) } ?? (r.unavailable[k] != nil ? "n/a" : "–") }
            s += EvaluationReport.row([r.label, r.mode, r.model.map { "`\($0)`" } ?? "–"] + values
                                      + [EvaluationReport.fmt(r.fps), EvaluationReport.fmt(r.chunkMedian.map { $0 * 1000 })])
        }
        s += "\nn/a: not computed in that evaluation (see its report.md); –: not part of its protocol.\n\n"
        s += EvaluationReport.header(["metric", "unit", "better"])
        for k in keys { if let i = MetricInfo.named(k) { s += EvaluationReport.row([i.name, i.unit, i.higherIsBetter ? "higher" : "lower"]) } }
        s += "\nSources: " + runs.map { "`\($0.directory)`" }.joined(separator: ", ") + "\n\n![comparison](comparison.png)\n"
        let panels = keys.compactMap { k -> RGBImage? in
            guard let i = MetricInfo.named(k) else { return nil }
            var chart = BarChart(title: "\(i.name) (\(i.higherIsBetter ? "higher" : "lower") is better)", yLabel: i.unit,
                                 categories: runs.map(\.label), groups: [(i.name, runs.map { $0.overall[k] })])
            chart.height = 300
            return chart.render()
        }
        try OutputFolder.write(path) { dir in
            try s.write(to: dir.appendingPathComponent("report.md"), atomically: true, encoding: .utf8)
            if !panels.isEmpty { try ImageIO.write(stack(panels), to: dir.appendingPathComponent("comparison.png").path) }
        }
        logger.info("wrote \(path): report.md, comparison.png")
        return s
    }

    /// Panels one above the other.
    static func stack(_ panels: [RGBImage]) -> RGBImage {
        let w = panels.map(\.width).max()!, h = panels.map(\.height).reduce(0, +)
        var out = RGBImage(width: w, height: h, fill: (255, 255, 255))
        var y0 = 0
        for p in panels {
            for y in 0..<p.height {
                let s = y * p.width * 3, d = ((y0 + y) * w) * 3
                out.pixels.replaceSubrange(d..<(d + p.width * 3), with: p.pixels[s..<(s + p.width * 3)])
            }
            y0 += p.height
        }
        return out
    }
}
