// ReportCommand.swift — `personalive report RUN…`: what each run folder holds and how it went
// (training loss at the start and the end, validation metrics at the first and last validation).
import ArgumentParser
import Foundation
import Training

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Summarise run folders (Experiments/<run>): losses, validation metrics, files.")

    @Argument(help: "Run folders holding metrics.jsonl.") var runs: [String]

    func run() throws {
        for run in runs {
            let dir = URL(fileURLWithPath: run)
            let records = MetricsLog.read(dir.appendingPathComponent("metrics.jsonl"))
            guard !records.isEmpty else { throw CLIError("\(run): no metrics.jsonl records") }
            let steps = records.filter { $0["validation"] == nil }
            let vals = records.filter { $0["validation"] != nil }
            print("\(run):")
            if !steps.isEmpty {
                let losses = steps.compactMap { $0["loss"] as? Double }
                let k = max(1, min(20, losses.count / 4))
                func mean(_ xs: ArraySlice<Double>) -> Double { xs.reduce(0, +) / Double(max(xs.count, 1)) }
                print(String(format: "  steps %d, loss (mean of %d) first %.5g → last %.5g", steps.count, k,
                             mean(losses.prefix(k)), mean(losses.suffix(k))))
            }
            if let first = vals.first, let last = vals.last {
                let keys = first.keys.filter { $0.hasPrefix("val_") }.sorted()
                for key in keys {
                    let a = first[key] as? Double ?? .nan, b = last[key] as? Double ?? .nan
                    print(String(format: "  %@: step %d %.5g → step %d %.5g", String(key.dropFirst(4)),
                                 first["step"] as? Int ?? 0, a, last["step"] as? Int ?? 0, b))
                }
                if let s = last["step"] as? Int {
                    let vdir = dir.appendingPathComponent("validation/step-\(s)")
                    let files = (try? FileManager.default.contentsOfDirectory(atPath: vdir.path))?.sorted() ?? []
                    print("  last validation: \(vdir.path) [\(files.joined(separator: ", "))]")
                }
            }
            let curve = dir.appendingPathComponent("loss_curve.png")
            if FileManager.default.fileExists(atPath: curve.path) { print("  loss curve: \(curve.path)") }
        }
    }
}
