// DatasetValidator.swift — checks an open HDF5 file against the layout of DESIGN §3 and reports
// every violation with its HDF5 path (format/version attributes, groups, dtypes, shapes, box and
// pose lengths = frame count, clip attributes, split lists), plus what it could read.

/// What validation found: the readable clips and splits, and every problem.
public struct DatasetSummary: Sendable {
    public var clips: [ClipInfo]
    public var splits: [String: [String]]
    public var problems: [LayoutProblem]
    public var isValid: Bool { problems.isEmpty }
}

public enum DatasetValidator {
    /// Validates the whole file. Never throws for layout problems; they are collected.
    public static func validate(_ file: HDF5File) -> DatasetSummary {
        var problems: [LayoutProblem] = []
        var clips: [ClipInfo] = []
        var splits: [String: [String]] = [:]
        func problem(_ path: String, _ msg: String) { problems.append(LayoutProblem(path: path, msg)) }

        guard let root = try? file.root else {
            return DatasetSummary(clips: [], splits: [:], problems: [LayoutProblem(path: "/", "cannot open the root group")])
        }
        switch try? root.attribute("format") {
        case .some(let v) where v.stringValue == DatasetLayout.format: break
        case .some(let v): problem("/", "attribute 'format' is \(v), expected \"\(DatasetLayout.format)\"")
        default: problem("/", "missing attribute 'format' (expected \"\(DatasetLayout.format)\")")
        }
        switch try? root.attribute("version") {
        case .some(let v) where v.intValue == DatasetLayout.version: break
        case .some(let v): problem("/", "attribute 'version' is \(v), expected \(DatasetLayout.version)")
        default: problem("/", "missing attribute 'version' (expected \(DatasetLayout.version))")
        }

        let clipsPath = "/" + DatasetLayout.clipsGroup
        if (try? root.kind(of: DatasetLayout.clipsGroup)) != .some(.group) {
            problem(clipsPath, "missing group")
        } else if let group = try? root.group(DatasetLayout.clipsGroup) {
            do {
                for id in try group.memberNames() {
                    if let info = validateClip(group, id, &problems) { clips.append(info) }
                }
            } catch {
                problem(clipsPath, "cannot list clips (\(error))")
            }
        }

        let splitsPath = "/" + DatasetLayout.splitsGroup
        let known = Set(clips.map(\.id))
        if (try? root.kind(of: DatasetLayout.splitsGroup)) != .some(.group) {
            problem(splitsPath, "missing group (expected datasets 'train' and 'val' listing clip ids)")
        } else if let group = try? root.group(DatasetLayout.splitsGroup) {
            for name in DatasetLayout.splitNames {
                let path = splitsPath + "/" + name
                guard (try? group.kind(of: name)) == .some(.dataset) else {
                    problem(path, "missing dataset (a list of clip ids)")
                    continue
                }
                do {
                    let ds = try group.dataset(name)
                    let dt = try ds.dtype
                    guard dt == .string else { problem(path, "dtype \(dt), expected strings"); continue }
                    let ids = try ds.readStrings()
                    splits[name] = ids
                    for id in ids where !known.contains(id) { problem(path, "lists clip '\(id)', which is not in /clips") }
                } catch {
                    problem(path, "unreadable (\(error))")
                }
            }
            if let train = splits["train"], let val = splits["val"] {
                let both = Set(train).intersection(val)
                if !both.isEmpty { problem(splitsPath, "clips in both train and val: \(both.sorted().prefix(5).joined(separator: ", "))") }
            }
        }
        return DatasetSummary(clips: clips, splits: splits, problems: problems)
    }

    /// Checks one clip group; returns its info when it is usable.
    static func validateClip(_ clips: HDF5Group, _ id: String, _ problems: inout [LayoutProblem]) -> ClipInfo? {
        let base = DatasetLayout.clipPath(id)
        let before = problems.count
        func problem(_ path: String, _ msg: String) { problems.append(LayoutProblem(path: path, msg)) }
        guard (try? clips.kind(of: id)) == .some(.group), let g = try? clips.group(id) else {
            problem(base, "expected a group per clip")
            return nil
        }

        /// (shape, dtype) of a member dataset, or nil with a problem recorded.
        func inspect(_ name: String, required: Bool) -> ([Int], HDF5DType)? {
            let path = base + "/" + name
            switch try? g.kind(of: name) {
            case .some(.dataset):
                guard let d = try? g.dataset(name), let s = try? d.shape, let t = try? d.dtype else {
                    problem(path, "unreadable dataset")
                    return nil
                }
                return (s, t)
            case .some:
                problem(path, "is not a dataset")
            default:
                if required { problem(path, "missing dataset") }
            }
            return nil
        }

        var frames = 0, height = 0, width = 0
        if let (s, t) = inspect("frames", required: true) {
            if t != .uint8 { problem(base + "/frames", "dtype \(t), expected uint8") }
            if s.count != 4 || s[3] != 3 || s.contains(where: { $0 < 1 }) {
                problem(base + "/frames", "shape \(s), expected (T,H,W,3) with T,H,W ≥ 1")
            } else {
                (frames, height, width) = (s[0], s[1], s[2])
            }
        }
        let expectT = frames > 0 ? "\(frames)" : "T"
        if let (s, t) = inspect("boxes", required: true) {
            if t != .float32 { problem(base + "/boxes", "dtype \(t), expected float32") }
            if s.count != 3 || s[1] != 4 || s[2] != 4 || (frames > 0 && s[0] != frames) {
                problem(base + "/boxes", "shape \(s), expected (\(expectT),4,4) (face, left eye, right eye, mouth × x1,y1,x2,y2)")
            }
        }
        let pose = inspect("pose", required: false)
        if let (s, t) = pose {
            if t != .float32 { problem(base + "/pose", "dtype \(t), expected float32") }
            if s.count != 2 || s[1] != DatasetLayout.poseNames.count || (frames > 0 && s[0] != frames) {
                problem(base + "/pose", "shape \(s), expected (\(expectT),\(DatasetLayout.poseNames.count)) (\(DatasetLayout.poseNames.joined(separator: ", ")))")
            }
        }
        let kps = inspect("keypoints", required: false)
        if let (s, t) = kps {
            if t != .float32 { problem(base + "/keypoints", "dtype \(t), expected float32") }
            if s.count != 3 || s[1] != DatasetLayout.keypointCount || s[2] != 3 || (frames > 0 && s[0] != frames) {
                problem(base + "/keypoints", "shape \(s), expected (\(expectT),\(DatasetLayout.keypointCount),3)")
            }
        }

        var fps = 0.0
        switch try? g.attribute("fps") {
        case .some(let v) where (v.doubleValue ?? 0) > 0: fps = v.doubleValue!
        case .some(let v): problem(base, "attribute 'fps' is \(v), expected a positive number")
        default: problem(base, "missing attribute 'fps'")
        }
        var source = ""
        switch try? g.attribute("source") {
        case .some(let v) where v.stringValue != nil: source = v.stringValue!
        case .some(let v): problem(base, "attribute 'source' is \(v), expected a string")
        default: problem(base, "missing attribute 'source'")
        }
        for (name, expected) in [("width", width), ("height", height)] {
            switch try? g.attribute(name) {
            case .some(let v):
                if let n = v.intValue {
                    if expected > 0 && n != expected { problem(base, "attribute '\(name)' is \(n), frames are \(expected) wide/high") }
                } else {
                    problem(base, "attribute '\(name)' is \(v), expected an integer")
                }
            default: problem(base, "missing attribute '\(name)'")
            }
        }
        var boxesSource: String?
        switch try? g.attribute(DatasetLayout.boxesSourceAttribute) {
        case .some(let v) where v.stringValue != nil: boxesSource = v.stringValue
        case .some(let v): problem(base, "attribute '\(DatasetLayout.boxesSourceAttribute)' is \(v), expected a string")
        default: break
        }
        guard problems.count == before else { return nil }
        return ClipInfo(id: id, frameCount: frames, width: width, height: height, fps: fps, source: source,
                        hasPose: pose != nil, hasKeypoints: kps != nil, boxesSource: boxesSource)
    }
}
