// EvaluationReport.swift — writes an evaluation into its output folder: metrics.json (per frame,
// per clip, overall, with the model, its digest and the command), report.md (tables), plots/ (each
// metric over the generated frame index, one line per clip; per-clip bars; chunk latency) and
// strips/ (sample frames). Everything is written into a temporary sibling folder that is renamed
// into place only when complete, so a failure leaves nothing half-written at --out.
import Foundation
import Logging
import Media

public enum OutputFolder {
    /// Runs `body` on a fresh temporary sibling of `path`, then moves it to `path` (replacing an
    /// earlier one). On an error the temporary folder is removed and `path` is untouched.
    public static func write(_ path: String, _ body: (URL) throws -> Void) throws {
        let dest = URL(fileURLWithPath: path).standardizedFileURL
        let parent = dest.deletingLastPathComponent()
        let fm = FileManager.default
        try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: dest.path, isDirectory: &isDir), !isDir.boolValue {
            throw EvaluationError("\(path) exists and is not a folder")
        }
        let token = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let tmp = parent.appendingPathComponent(".\(dest.lastPathComponent).partial-\(token)")
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        do {
            try body(tmp)
            if fm.fileExists(atPath: dest.path) {
                let old = parent.appendingPathComponent(".\(dest.lastPathComponent).old-\(token)")
                try fm.moveItem(at: dest, to: old)
                try fm.moveItem(at: tmp, to: dest)
                try? fm.removeItem(at: old)
            } else {
                try fm.moveItem(at: tmp, to: dest)
            }
        } catch {
            try? fm.removeItem(at: tmp)
            throw error
        }
    }
}

public enum EvaluationReport {
    public static func write(_ result: EvaluationResult, to path: String, logger: Logger) throws {
        try OutputFolder.write(path) { dir in
            let data = try JSONSerialization.data(withJSONObject: result.json(), options: [.prettyPrinted, .sortedKeys])
            try data.write(to: dir.appendingPathComponent("metrics.json"))
            let plots = dir.appendingPathComponent("plots"), strips = dir.appendingPathComponent("strips")
            try FileManager.default.createDirectory(at: plots, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: strips, withIntermediateDirectories: true)
            var pictures: [String] = []
            for key in result.metricKeys {
                guard let info = MetricInfo.named(key) else { continue }
                let series = result.clips.enumerated().map { i, c in
                    PlotSeries(name: c.driver.map { "\(c.id) ← \($0)" } ?? c.id,
                               points: (c.perFrame[key] ?? []).enumerated().compactMap { t, v in v.map { (Double(t + 1), $0) } },
                               color: PlotPalette.color(i), thickness: 2, inLegend: i < 10, markers: c.frames <= 40)
                }
                let line = LineChart(title: "\(info.name) per frame (\(result.label))", xLabel: "generated frame (1 = first after the reference)",
                                     yLabel: "\(info.name) [\(info.unit)]", series: series)
                try ImageIO.write(line.render(), to: plots.appendingPathComponent("\(key).png").path)
                let bars = BarChart(title: "\(info.name), mean per clip (\(result.label))", yLabel: "\(info.name) [\(info.unit)]",
                                    categories: result.clips.map(\.id), groups: [(info.name, result.clips.map { $0.mean(key) })])
                try ImageIO.write(bars.render(), to: plots.appendingPathComponent("clips_\(key).png").path)
                pictures += ["plots/\(key).png", "plots/clips_\(key).png"]
            }
            if !result.allChunkSeconds.isEmpty {
                let series = result.clips.enumerated().map { i, c in
                    PlotSeries(name: c.id, points: c.chunkSeconds.enumerated().map { (Double($0.offset + 1), $0.element * 1000) },
                               color: PlotPalette.color(i), inLegend: i < 10, markers: true)
                }
                let chart = LineChart(title: "latency per chunk (\(result.label))", xLabel: "chunk (stream call)", yLabel: "latency [ms]",
                                      series: series)
                try ImageIO.write(chart.render(), to: plots.appendingPathComponent("chunk_latency.png").path)
                pictures.append("plots/chunk_latency.png")
            }
            for c in result.clips {
                guard let strip = c.strip else { continue }
                let name = "strips/\(safeName(c.id)).png"
                try ImageIO.write(strip, to: dir.appendingPathComponent(name).path)
                pictures.append(name)
            }
            try markdown(result, pictures: pictures).write(to: dir.appendingPathComponent("report.md"), atomically: true, encoding: .utf8)
        }
        logger.info("wrote \(path): metrics.json, report.md, plots/, strips/")
    }

    static func safeName(_ s: String) -> String {
        String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }

    static func fmt(_ v: Double?) -> String {
        guard let v else { return "–" }
        if !v.isFinite { return v > 0 ? "∞" : "−∞" }
        return abs(v) >= 100 ? String(format: "%.1f", v) : String(format: "%.4f", v)
    }

    /// One Markdown table row; a `|` inside a cell (a unit such as "mean |Δ|") is escaped so that
    /// it does not split the cell.
    static func row(_ cells: [String]) -> String {
        "| " + cells.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n"
    }

    /// The header row and its `|---|` rule.
    static func header(_ cells: [String]) -> String {
        row(cells) + "|" + String(repeating: "---|", count: cells.count) + "\n"
    }

    /// report.md: overall table, per-clip table, timing, unavailable metrics, notes, pictures.
    static func markdown(_ r: EvaluationResult, pictures: [String]) -> String {
        let keys = r.metricKeys
        let infos = keys.compactMap(MetricInfo.named)
        var s = "# Evaluation: \(r.label)\n\n"
        s += "- mode: \(r.mode)\n"
        if let m = r.model { s += "- model: `\(m)`" + (r.modelDigest.map { " (modules and settings digest \($0))" } ?? "") + "\n" }
        if let c = r.configDigest { s += "- config digest: \(c.digest) (`\(c.source)`)\n" }
        for (k, v) in r.inputs.sorted(by: { $0.key < $1.key }) { s += "- \(k): `\(v)`\n" }
        s += "- clips: \(r.clips.count), frames: \(r.clips.map(\.frames).reduce(0, +))\n"
        s += "- command: `\(r.command)`\n\n"
        s += "## Overall (mean over every frame)\n\n"
        s += header(["metric", "value", "unit", "better"])
        for i in infos { s += row([i.name, fmt(r.overall(i.key)), i.unit, i.higherIsBetter ? "higher" : "lower"]) }
        if let fps = r.fps {
            let c = r.allChunkSeconds
            s += row(["FPS", fmt(fps), "generated frames / s (incl. reference encoding)", "higher"])
            s += row(["chunk latency, median", fmt(EvaluationResult.median(c).map { $0 * 1000 }), "ms per stream call", "lower"])
            s += row(["chunk latency, p95", fmt(EvaluationResult.percentile(c, 95).map { $0 * 1000 }), "ms per stream call", "lower"])
        }
        s += "\n## Per clip (mean over its frames)\n\n"
        let withDriver = r.clips.contains { $0.driver != nil }
        s += header(["clip"] + (withDriver ? ["driver"] : []) + ["frames"] + infos.map(\.name))
        for c in r.clips {
            s += row([c.id] + (withDriver ? [c.driver ?? "–"] : []) + ["\(c.frames)"] + infos.map { fmt(c.mean($0.key)) })
        }
        if !r.unavailable.isEmpty {
            s += "\n## Not computed\n\n"
            for (k, why) in r.unavailable.sorted(by: { $0.key < $1.key }) { s += "- \(MetricInfo.named(k)?.name ?? k): \(why)\n" }
        }
        s += "\n## What the metrics are\n\n"
        for i in infos { s += "- \(i.name): \(i.meaning).\n" }
        if !r.notes.isEmpty {
            s += "\n## Notes\n\n"
            for n in r.notes { s += "- \(n)\n" }
        }
        if !pictures.isEmpty {
            s += "\n## Pictures\n\n"
            for p in pictures { s += "![\(p)](\(p))\n" }
        }
        return s
    }
}
