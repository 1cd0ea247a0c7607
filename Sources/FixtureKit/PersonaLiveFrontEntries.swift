// PersonaLiveFrontEntries.swift — fixture entries for PersonaLive's conditioning front-ends:
// PoseGuider, the motion encoder (MotEncoder), LivePortrait's MotionExtractor with the keypoint
// maths built on it, and the keypoint renderer (draw_keypoints / get_boxes).
import Models
import NN
import Torch

let personaliveFrontEntries: [FixtureEntry] = [
    FixtureEntry(["src.models.pose_guider.PoseGuider"]) { c in
        let m = try PoseGuider(c.config(PoseGuider.Config.self))
        try m.load(from: c.weights())
        m.eval()
        return ["out.embedding": try m(c.input("conditioning"))]
    },

    FixtureEntry(["src.models.motion_encoder.encoder.MotEncoder"]) { c in
        let m = try FormulaWeightBuilds.motionEncoder(c)
        var out: [String: Tensor] = [:]
        if c.hasInput("face") { out["out.tokens"] = try m(c.input("face")) }
        if c.hasInput("face_5d") { out["out.tokens_5d"] = try m(c.input("face_5d")) }
        return out
    },

    FixtureEntry(["src.liveportrait.motion_extractor.MotionExtractor"]) { c in
        let m = try FormulaWeightBuilds.motionExtractor(c)
        let ref = try c.input("ref"), motion = try c.input("motion")
        var out: [String: Tensor] = [:]

        // Raw detector heads, features and the (unused by PersonaLive) expression head.
        let features = try m.detector.forwardFeatures(ref)
        let refInfo = try m.detector(ref)
        let motionInfo = try m.detector(motion)
        for (prefix, info) in [("out.ref", refInfo), ("out.motion", motionInfo)] {
            out["\(prefix).pitch"] = info.pitch
            out["\(prefix).yaw"] = info.yaw
            out["\(prefix).roll"] = info.roll
            out["\(prefix).t"] = info.t
            out["\(prefix).scale"] = info.scale
            out["\(prefix).kp"] = info.kp
        }
        out["out.ref.features"] = features
        out["out.ref.exp_unused"] = try m.detector.fc_exp(features)

        // Bins → degrees → rotation, and get_kp.
        let pitch = try m.degrees(refInfo.pitch), yaw = try m.degrees(refInfo.yaw), roll = try m.degrees(refInfo.roll)
        out["out.ref.pitch_deg"] = pitch
        out["out.ref.yaw_deg"] = yaw
        out["out.ref.roll_deg"] = roll
        out["out.ref.rot"] = try Keypoints.rotationMatrix(pitch: pitch, yaw: yaw, roll: roll)
        out["out.ref.forward_kp"] = try m(ref)
        out["out.motion.forward_kp"] = try m.transformedKeypoints(motionInfo)

        // Retargeting: inference(), the online eased start, get_kps on reversed frames, offline.
        // Call arguments as the case's `call` texts state them (PersonaLive's values by default).
        let count = Int(callArgument(c, "online", "num_interp") ?? "") ?? 13
        let offlineCount = Int(callArgument(c, "offline", "num_interp") ?? "") ?? 13
        let tScale = Double(callArgument(c, "get_kps", "t_scale") ?? "") ?? 0.5
        let sScale = Double(callArgument(c, "get_kps", "s_scale") ?? "") ?? 0
        let first = try motion.narrow(0, start: 0, length: 1)
        let inference = try m.inference(reference: ref, driving: first)
        out["out.inference.kp_s"] = inference.source
        out["out.inference.kp_d"] = inference.driving
        let online = try m.interpolateKeypointsOnline(reference: ref, driving: motion, count: count)
        out["out.online.kp_interp"] = online.interpolated
        out["out.online.kp_dri"] = online.driving
        let kps = try m.retargetedKeypoints(reference: online.reference, firstFrame: online.firstFrame,
                                            driving: motion.flip([0]), tScale: tScale, sScale: sScale)
        out["out.get_kps.kps_motion"] = kps.retargeted
        out["out.get_kps.kps_dri"] = kps.driving
        out["out.offline.kp_interp"] = try m.interpolateKeypoints(reference: ref, driving: motion, count: offlineCount)
        return out
    },

    FixtureEntry(["src.utils.util.draw_keypoints / src.utils.util.get_boxes"]) { c in
        let height = c.config["height"]?.int ?? 512, width = c.config["width"]?.int ?? 512
        let kp = try c.input("keypoints")
        let canvas = try Keypoints.draw(kp, height: height, width: width)
        // The case stores the float canvas as (canvas·255).round() in uint8 (exact equality).
        return [
            "out.canvas_u8": try (canvas * 255).round().to(.uint8),
            "out.boxes": try Keypoints.boxes(kp, height: height, width: width),
        ]
    },
]

/// `name=value` inside the case's `call.<part>` text (e.g. num_interp=13), if stated.
private func callArgument(_ c: FixtureCase, _ part: String, _ name: String) -> String? {
    guard let text = c.json["call"]?[part]?.string, let r = text.range(of: "\(name)=") else { return nil }
    let value = text[r.upperBound...].prefix { $0.isNumber || $0 == "." || $0 == "-" }
    return value.isEmpty ? nil : String(value)
}

/// Builders for the formula-weight cases: the module from the case config, loaded strictly from
/// the case's weights_formula, in eval mode. Built uninitialised since every entry is overwritten
/// (the kept constants pe / idx_tensor are computed, not drawn).
private enum FormulaWeightBuilds {
    static func motionEncoder(_ c: FixtureCase) throws -> MotionEncoder {
        let config = try c.config(MotionEncoder.Config.self)
        let m = try ParameterInit.uninitialized { try MotionEncoder(config) }
        try m.load(from: c.formulaWeights(for: m))
        m.eval()
        return m
    }

    static func motionExtractor(_ c: FixtureCase) throws -> MotionExtractor {
        let config = try c.config(MotionExtractor.Config.self)
        let m = try ParameterInit.uninitialized { try MotionExtractor(config) }
        try m.load(from: c.formulaWeights(for: m))
        m.eval()
        return m
    }
}
