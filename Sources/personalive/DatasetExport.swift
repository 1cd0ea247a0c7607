// DatasetExport.swift — `personalive dataset export`: one clip of an HDF5 dataset as an mp4 at the
// clip's frame rate, plus its first frame as a PNG (the reference of a self-reenactment), so that
// dataset clips can drive `animate` and be compared with what it generates.
import ArgumentParser
import Data
import Foundation
import Media

struct DatasetExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write one clip as an mp4 at its frame rate (and its first frame as a PNG).")

    @Argument(help: "The dataset (.h5).") var dataset: String
    @Option(help: "Clip id (default: the --index-th clip of --split).") var clip: String?
    @Option(help: "Split to pick the clip from when --clip is not given.") var split: String = "val"
    @Option(help: "Position of the clip in the split.") var index: Int = 0
    @Option(help: "The video to write (.mp4).") var out: String
    @Option(help: "Also write the clip's first frame here (PNG).") var reference: String?
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let logger = try global.setUp(label: "dataset")
        let reader = try DatasetReader(path: dataset, logger: logger)
        let id: String
        if let clip {
            id = clip
        } else {
            let ids = try reader.split(split)
            guard index >= 0, index < ids.count else {
                throw CLIError("\(dataset): split '\(split)' has \(ids.count) clips, no index \(index)")
            }
            id = ids[index]
        }
        let info = try reader.info(id)
        let first = try reader.frame(id, 0)
        let writer = try VideoWriter(path: out, width: first.width, height: first.height,
                                     options: .init(fps: info.fps > 0 ? info.fps : 25), logger: logger)
        for t in 0..<info.frameCount { try writer.write(t == 0 ? first : reader.frame(id, t)) }
        try writer.finish()
        if let reference { try ImageIO.write(first, to: reference) }
        print("wrote \(out): clip \(id), \(info.frameCount) frames at \(info.fps) fps" + (reference.map { ", first frame \($0)" } ?? ""))
    }
}
