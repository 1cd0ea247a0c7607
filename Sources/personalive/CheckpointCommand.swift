// CheckpointCommand.swift — `personalive checkpoint inspect FILE` (safetensors or .pth).
import ArgumentParser
import Foundation
import Torch

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint", abstract: "Inspect, import and export weight files.",
        subcommands: [Inspect.self, CheckpointImportCommand.self, CheckpointExportCommand.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List keys, dtypes and shapes, with the parameter count and total bytes.")

        @Argument(help: "A .safetensors file, a *.safetensors.index.json, or a PyTorch .pth/.bin/.pt state dict.")
        var file: String

        @Option(help: "Show at most this many keys (0 = all).")
        var limit: Int = 0

        @OptionGroup var global: GlobalOptions

        func run() throws {
            _ = try global.setUp(label: "checkpoint")
            var rows: [(String, DType, [Int])] = []
            var metadata: [String: String] = [:]
            if file.hasSuffix(".safetensors") || file.hasSuffix(".index.json") {
                let src = try openWeights(path: file)
                rows = src.keys.compactMap { k in src.entry(k).map { (k, $0.dtype, $0.shape) } }
                metadata = (src as? SafeTensorsFile)?.metadata ?? (src as? SafeTensorsIndex)?.metadata ?? [:]
            } else {
                rows = try Pth.load(path: file).map { ($0.0, $0.1.dtype, $0.1.shape) }
            }
            let shown = limit > 0 ? Array(rows.prefix(limit)) : rows
            let width = min(90, (shown.map(\.0.count).max() ?? 10) + 2)
            for (k, dt, shape) in shown {
                print(k.padding(toLength: max(width, k.count + 1), withPad: " ", startingAt: 0)
                      + dt.description.padding(toLength: 10, withPad: " ", startingAt: 0) + "\(shape)")
            }
            if shown.count < rows.count { print("... \(rows.count - shown.count) more") }
            let params = rows.reduce(0) { $0 + $1.2.reduce(1, *) }
            let bytes = rows.reduce(0) { $0 + $1.2.reduce(1, *) * $1.1.byteSize }
            if !metadata.isEmpty {
                print("metadata: " + metadata.keys.sorted().map { "\($0)=\(metadata[$0]!)" }.joined(separator: ", "))
            }
            let dtypes = Dictionary(grouping: rows, by: { $0.1 }).map { "\($0.key): \($0.value.count)" }.sorted()
            print("\(rows.count) tensors, \(params) parameters (\(String(format: "%.2f", Double(params) / 1e6))M), "
                  + "\(bytes) bytes (\(String(format: "%.1f", Double(bytes) / 1_048_576)) MiB); dtypes \(dtypes.joined(separator: ", "))")
        }
    }
}
