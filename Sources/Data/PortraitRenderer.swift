// PortraitRenderer.swift — ray-casts one synthetic talking-portrait frame. The head is a set of
// ellipsoids (skull, hair shell, ears, nose) in the canonical keypoint space of HeadPose.swift, placed
// in the image by the same k = s·(k_c·R) + t and pixel = (x,y)·0.5+0.5 mapping as the stored
// keypoints, so ground truth and pixels agree by construction. Orthographic camera looking along +z;
// canonical y points down, the face looks towards −z. Eyes, brows and mouth are painted on the skull
// surface in canonical (x,y), so they foreshorten and hide with the pose like real features.
import Foundation

/// Everything that stays fixed for one synthetic person (one clip).
struct PortraitIdentity: Sendable {
    var headRadii: (Double, Double, Double)
    var skin: (Double, Double, Double)
    var hair: (Double, Double, Double)
    /// 0 short, 1 long, 2 very short (almost bald).
    var hairStyle: Int
    var hairline: Double
    var iris: (Double, Double, Double)
    var lips: (Double, Double, Double)
    var clothes: (Double, Double, Double)
    var collar: (Double, Double, Double)
    var eyeX: Double, eyeY: Double, eyeW: Double, eyeH: Double
    var browY: Double, browThickness: Double
    var mouthY: Double, mouthW: Double
    var noseLength: Double
    var light: (Double, Double, Double)
    var background: [(Double, Double, Double)]
    /// 0 gradient, 1 stripes, 2 blobs.
    var backgroundKind: Int
    var blobs: [(Double, Double, Double, Int)]
    var stripeAngle: Double, stripePeriod: Double
}

/// The animated state of one frame.
struct PortraitState: Sendable {
    var pose: HeadPose
    /// 1 open ... 0 closed.
    var eyeOpen: Double
    /// Gaze in [-1, 1]².
    var gazeX: Double, gazeY: Double
    /// 0 closed ... 1 wide open.
    var mouthOpen: Double
    /// 0 neutral ... 1 full smile.
    var smile: Double
    /// 0 ... 1 raised brows.
    var browRaise: Double
}

/// Canonical 3D geometry derived from identity + expression: ellipsoids and the 21 keypoints.
struct PortraitGeometry {
    struct Ellipsoid {
        var c: (Double, Double, Double)
        var r: (Double, Double, Double)
    }
    var head: Ellipsoid
    var hair: Ellipsoid
    var leftEar: Ellipsoid
    var rightEar: Ellipsoid
    var nose: Ellipsoid

    /// Keypoint names in index order (see `canonicalKeypoints`).
    static let keypointNames = [
        "forehead", "left_eye", "right_eye", "nose_tip", "mouth_center", "left_mouth_corner", "right_mouth_corner",
        "upper_lip", "lower_lip", "left_brow", "right_brow", "left_brow_outer", "chin", "right_brow_outer",
        "left_cheek", "left_jaw", "right_cheek", "left_eye_outer", "right_eye_outer", "nose_bridge", "right_jaw",
    ]

    init(identity id: PortraitIdentity) {
        let (rx, ry, rz) = id.headRadii
        head = Ellipsoid(c: (0, 0, 0), r: (rx, ry, rz))
        let grow = id.hairStyle == 2 ? 1.015 : 1.07
        hair = Ellipsoid(c: (0, -0.04, 0.03), r: (rx * grow, ry * (grow - 0.02), rz * grow))
        leftEar = Ellipsoid(c: (-rx * 0.97, 0.03, 0.06), r: (0.05, 0.11, 0.07))
        rightEar = Ellipsoid(c: (rx * 0.97, 0.03, 0.06), r: (0.05, 0.11, 0.07))
        nose = Ellipsoid(c: (0, 0.09, -rz * 0.9), r: (0.05, 0.11, id.noseLength))
    }

    /// z of the skull's front surface at canonical (x, y).
    static func frontZ(_ id: PortraitIdentity, _ x: Double, _ y: Double) -> Double {
        let (rx, ry, rz) = id.headRadii
        let q = 1 - (x / rx) * (x / rx) - (y / ry) * (y / ry)
        return -rz * max(q, 0).squareRoot()
    }

    /// Mouth shape for an expression: half width, half opening, corner lift.
    static func mouth(_ id: PortraitIdentity, _ s: PortraitState) -> (w: Double, open: Double, lift: Double) {
        (id.mouthW * (1 + 0.25 * s.smile - 0.1 * s.mouthOpen), 0.004 + 0.06 * s.mouthOpen, 0.035 * s.smile)
    }

    /// The 21 canonical keypoints (N×3, x right, y down, z away from the viewer).
    static func canonicalKeypoints(_ id: PortraitIdentity, _ s: PortraitState) -> [Double] {
        let (rx, ry, rz) = id.headRadii
        let m = mouth(id, s)
        let brow = id.browY - 0.03 * s.browRaise
        func onFace(_ x: Double, _ y: Double, _ dz: Double = 0) -> [Double] { [x, y, frontZ(id, x, y) + dz] }
        let chinY = ry * 0.9 + 0.025 * s.mouthOpen
        let points: [[Double]] = [
            onFace(0, -0.3),                                            // 0 forehead
            onFace(-id.eyeX, id.eyeY),                                  // 1 left eye
            onFace(id.eyeX, id.eyeY),                                   // 2 right eye
            [0, 0.09 + 0.06, -(rz * 0.9 + id.noseLength * 0.92)],       // 3 nose tip
            onFace(0, id.mouthY + m.open * 0.5),                        // 4 mouth centre
            onFace(-m.w, id.mouthY - m.lift),                           // 5 left mouth corner
            onFace(m.w, id.mouthY - m.lift),                            // 6 right mouth corner
            onFace(0, id.mouthY - m.open - 0.012),                      // 7 upper lip
            onFace(0, id.mouthY + m.open + 0.012),                      // 8 lower lip
            onFace(-id.eyeX, brow),                                     // 9 left brow
            onFace(id.eyeX, brow),                                      // 10 right brow
            onFace(-id.eyeX - 0.07, brow + 0.015),                      // 11 left brow outer
            [0, chinY, frontZ(id, 0, min(chinY, ry * 0.97))],           // 12 chin
            onFace(id.eyeX + 0.07, brow + 0.015),                       // 13 right brow outer
            onFace(-rx * 0.6, 0.12),                                    // 14 left cheek
            onFace(-rx * 0.72, 0.33),                                   // 15 left jaw
            onFace(rx * 0.6, 0.12),                                     // 16 right cheek
            onFace(-id.eyeX - id.eyeW, id.eyeY),                        // 17 left eye outer
            onFace(id.eyeX + id.eyeW, id.eyeY),                         // 18 right eye outer
            onFace(0, id.eyeY, -0.02),                                  // 19 nose bridge
            onFace(rx * 0.72, 0.33),                                    // 20 right jaw
        ]
        return points.flatMap { $0 }
    }

    /// Canonical outline points of the face (forehead to chin, cheek to cheek), for the face box.
    static func faceOutline(_ id: PortraitIdentity) -> [Double] {
        let (rx, ry, _) = id.headRadii
        var pts: [Double] = []
        for i in 0..<32 {
            let a = Double(i) / 32 * 2 * .pi
            let x = rx * 0.93 * cos(a), y = 0.055 + ry * 0.9 * sin(a)
            pts += [x, y, frontZ(id, x, min(y, ry * 0.99))]
        }
        return pts
    }

    /// Canonical outline points of an eye (−1 left, +1 right) or of the mouth (side 0).
    static func featureOutline(_ id: PortraitIdentity, _ s: PortraitState, side: Int) -> [Double] {
        var pts: [Double] = []
        for i in 0..<16 {
            let a = Double(i) / 16 * 2 * .pi
            let x: Double, y: Double
            if side == 0 {
                let m = mouth(id, s)
                x = m.w * 1.08 * cos(a)
                y = id.mouthY + (m.open + 0.02) * sin(a) - m.lift * (x / m.w) * (x / m.w)
            } else {
                x = Double(side) * id.eyeX + id.eyeW * 1.1 * cos(a)
                y = id.eyeY + id.eyeH * 1.2 * sin(a)
            }
            pts += [x, y, frontZ(id, x, y)]
        }
        return pts
    }
}

/// Renders frames of one identity.
struct PortraitRenderer {
    let identity: PortraitIdentity
    let size: Int
    /// Supersampling factor per axis (anti-aliasing for small images).
    let samples: Int
    /// The static background (size × size × 3, 0...1), with shoulders drawn per frame on top.
    private var background: [Double]

    init(identity: PortraitIdentity, size: Int) {
        self.identity = identity
        self.size = size
        samples = size <= 160 ? 2 : 1
        background = PortraitRenderer.makeBackground(identity, size)
    }

    private static func makeBackground(_ id: PortraitIdentity, _ size: Int) -> [Double] {
        var bg = [Double](repeating: 0, count: size * size * 3)
        let c0 = id.background[0], c1 = id.background[1], c2 = id.background[2]
        let ca = cos(id.stripeAngle), sa = sin(id.stripeAngle)
        for py in 0..<size {
            for px in 0..<size {
                let u = (Double(px) + 0.5) / Double(size), v = (Double(py) + 0.5) / Double(size)
                var w = v
                var col = (c0.0 * (1 - w) + c1.0 * w, c0.1 * (1 - w) + c1.1 * w, c0.2 * (1 - w) + c1.2 * w)
                switch id.backgroundKind {
                case 1:
                    let phase = (u * ca + v * sa) / id.stripePeriod
                    w = 0.5 + 0.5 * sin(phase * 2 * .pi)
                    w = w * w * 0.6
                    col = (col.0 * (1 - w) + c2.0 * w, col.1 * (1 - w) + c2.1 * w, col.2 * (1 - w) + c2.2 * w)
                case 2:
                    for (bx, by, br, k) in id.blobs {
                        let d = ((u - bx) * (u - bx) + (v - by) * (v - by)).squareRoot() / br
                        if d < 1 {
                            let a = 0.7 * (1 - d * d)
                            let bc = id.background[k % 3]
                            col = (col.0 * (1 - a) + bc.0 * a, col.1 * (1 - a) + bc.1 * a, col.2 * (1 - a) + bc.2 * a)
                        }
                    }
                default:
                    let vign = 1 - 0.25 * ((u - 0.5) * (u - 0.5) + (v - 0.4) * (v - 0.4))
                    col = (col.0 * vign, col.1 * vign, col.2 * vign)
                }
                let o = (py * size + px) * 3
                bg[o] = col.0; bg[o + 1] = col.1; bg[o + 2] = col.2
            }
        }
        return bg
    }

    /// Per-frame camera: world→canonical rotation and the ray direction in canonical space.
    private struct Frame {
        var mt: [Double]      // Mᵀ (canonical = Mᵀ·(X − t)/s), row-major
        var m: [Double]       // M = Rz·Ry·Rx (world normal = M·n)
        var s: Double, tx: Double, ty: Double
        var dir: (Double, Double, Double)   // canonical change per unit world z
    }

    /// Renders one frame as size × size × 3 bytes into `out` (offset `at`).
    func render(_ state: PortraitState, into out: inout [UInt8], at offset: Int) {
        let id = identity
        let geo = PortraitGeometry(identity: id)
        let r = state.pose.rotation                 // R = Mᵀ
        let m = [r[0], r[3], r[6], r[1], r[4], r[7], r[2], r[5], r[8]]
        let s = state.pose.scale
        let f = Frame(mt: r, m: m, s: s, tx: state.pose.tx, ty: state.pose.ty, dir: (r[2] / s, r[5] / s, r[8] / s))
        let mouth = PortraitGeometry.mouth(id, state)
        let ellipsoids = [geo.head, geo.hair, geo.leftEar, geo.rightEar, geo.nose]
        // Screen-space bounding boxes (in keypoint units) to skip rays that cannot hit.
        var bounds: [(Double, Double, Double, Double)] = []
        for e in ellipsoids {
            let cx = s * (e.c.0 * m[0] + e.c.1 * m[1] + e.c.2 * m[2]) + f.tx
            let cy = s * (e.c.0 * m[3] + e.c.1 * m[4] + e.c.2 * m[5]) + f.ty
            let hx = s * ((m[0] * e.r.0) * (m[0] * e.r.0) + (m[1] * e.r.1) * (m[1] * e.r.1) + (m[2] * e.r.2) * (m[2] * e.r.2)).squareRoot()
            let hy = s * ((m[3] * e.r.0) * (m[3] * e.r.0) + (m[4] * e.r.1) * (m[4] * e.r.1) + (m[5] * e.r.2) * (m[5] * e.r.2)).squareRoot()
            bounds.append((cx - hx, cx + hx, cy - hy, cy + hy))
        }
        // Body: shoulders below the head, following it at half the motion.
        let headCX = f.tx, headCY = f.ty
        let bodyCX = headCX * 0.5, shoulderY = headCY + s * id.headRadii.1 * 1.75
        let neckHalf = s * id.headRadii.0 * 0.42
        let n = Double(size)
        let ss = samples
        let inv = 1 / Double(ss * ss)
        for py in 0..<size {
            for px in 0..<size {
                var acc = (0.0, 0.0, 0.0)
                for sy in 0..<ss {
                    for sx in 0..<ss {
                        let fx = (Double(px) + (Double(sx) + 0.5) / Double(ss)) / n
                        let fy = (Double(py) + (Double(sy) + 0.5) / Double(ss)) / n
                        let x = fx * 2 - 1, y = fy * 2 - 1
                        var col = (background[(py * size + px) * 3], background[(py * size + px) * 3 + 1], background[(py * size + px) * 3 + 2])
                        // Neck and shoulders (flat, behind the head).
                        let dxs = (x - bodyCX) / (s * 1.25), dys = (y - shoulderY) / (s * 0.55)
                        if dys > -1 && dxs * dxs + max(dys, 0) * max(dys, 0) * 0.15 + (dys < 0 ? dys * dys : 0) < 1 {
                            let collar = abs(x - bodyCX) < (y - shoulderY + s * 0.35) * 0.45 && y > shoulderY - s * 0.45
                            let shade = 0.85 + 0.15 * (1 - min(abs(dxs), 1))
                            col = collar ? id.collar : (id.clothes.0 * shade, id.clothes.1 * shade, id.clothes.2 * shade)
                        } else if abs(x - bodyCX * 0.3 - headCX * 0.7) < neckHalf && y > headCY && y < shoulderY + s * 0.1 {
                            col = (id.skin.0 * 0.78, id.skin.1 * 0.78, id.skin.2 * 0.78)
                        }
                        if let c = shadeHead(x, y, f, ellipsoids, bounds, state, mouth) { col = c }
                        acc.0 += col.0; acc.1 += col.1; acc.2 += col.2
                    }
                }
                let o = offset + (py * size + px) * 3
                out[o] = PortraitRenderer.byte(acc.0 * inv)
                out[o + 1] = PortraitRenderer.byte(acc.1 * inv)
                out[o + 2] = PortraitRenderer.byte(acc.2 * inv)
            }
        }
    }

    @inline(__always)
    static func byte(_ v: Double) -> UInt8 { UInt8(max(0, min(255, (v * 255 + 0.5).rounded(.down)))) }

    /// Nearest hit of the ray through world (x, y) with ellipsoid `e`: (world z, canonical point), front or back root.
    @inline(__always)
    private func hit(_ e: PortraitGeometry.Ellipsoid, _ a: (Double, Double, Double), _ d: (Double, Double, Double), back: Bool) -> (Double, (Double, Double, Double))? {
        let ox = (a.0 - e.c.0) / e.r.0, oy = (a.1 - e.c.1) / e.r.1, oz = (a.2 - e.c.2) / e.r.2
        let dx = d.0 / e.r.0, dy = d.1 / e.r.1, dz = d.2 / e.r.2
        let qa = dx * dx + dy * dy + dz * dz
        let qb = 2 * (ox * dx + oy * dy + oz * dz)
        let qc = ox * ox + oy * oy + oz * oz - 1
        let disc = qb * qb - 4 * qa * qc
        if disc < 0 { return nil }
        let z = (-qb + (back ? 1 : -1) * disc.squareRoot()) / (2 * qa)
        return (z, (a.0 + z * d.0, a.1 + z * d.1, a.2 + z * d.2))
    }

    /// Colour of the head at world (x, y), or nil when the ray misses it.
    private func shadeHead(_ x: Double, _ y: Double, _ f: Frame, _ es: [PortraitGeometry.Ellipsoid],
                           _ bounds: [(Double, Double, Double, Double)], _ st: PortraitState,
                           _ mouth: (w: Double, open: Double, lift: Double)) -> (Double, Double, Double)? {
        var any = false
        for b in bounds where x >= b.0 && x <= b.1 && y >= b.2 && y <= b.3 { any = true; break }
        if !any { return nil }
        let id = identity
        // Canonical point of world (x, y, 0): Mᵀ·(X − t)/s, with Mᵀ = R (row-major `rotation`).
        let wx = (x - f.tx) / f.s, wy = (y - f.ty) / f.s
        let a = (f.mt[0] * wx + f.mt[1] * wy, f.mt[3] * wx + f.mt[4] * wy, f.mt[6] * wx + f.mt[7] * wy)
        var bestZ = Double.infinity
        var best = -1
        var bestP = (0.0, 0.0, 0.0)
        var inside = false
        for (i, e) in es.enumerated() {
            let b = bounds[i]
            if x < b.0 || x > b.1 || y < b.2 || y > b.3 { continue }
            guard let (z, p) = hit(e, a, f.dir, back: false) else { continue }
            if i == 1 {
                // Hair shell: only where there is hair; the inside of the shell shows at the edges.
                if hairCovers(p) {
                    if z < bestZ { bestZ = z; best = 1; bestP = p; inside = false }
                } else if let (zb, pb) = hit(e, a, f.dir, back: true), hairCovers(pb), zb < bestZ {
                    bestZ = zb; best = 1; bestP = pb; inside = true
                }
                continue
            }
            if z < bestZ { bestZ = z; best = i; bestP = p }
        }
        if best < 0 { return nil }
        let e = es[best]
        // Lambert shading with the world normal M·(p − c)/r².
        let nc = ((bestP.0 - e.c.0) / (e.r.0 * e.r.0), (bestP.1 - e.c.1) / (e.r.1 * e.r.1), (bestP.2 - e.c.2) / (e.r.2 * e.r.2))
        let m = f.m
        var nw = (m[0] * nc.0 + m[1] * nc.1 + m[2] * nc.2, m[3] * nc.0 + m[4] * nc.1 + m[5] * nc.2, m[6] * nc.0 + m[7] * nc.1 + m[8] * nc.2)
        let len = (nw.0 * nw.0 + nw.1 * nw.1 + nw.2 * nw.2).squareRoot()
        nw = (nw.0 / len, nw.1 / len, nw.2 / len)
        let l = id.light
        var lambert = max(0, nw.0 * l.0 + nw.1 * l.1 + nw.2 * l.2)
        if inside { lambert *= 0.3 }
        let shade = 0.5 + 0.55 * lambert
        var base: (Double, Double, Double)
        switch best {
        case 0: base = skinColor(bestP, st, mouth)
        case 1: base = id.hair
        case 4: base = (id.skin.0 * 1.02, id.skin.1 * 0.98, id.skin.2 * 0.98)
        default: base = (id.skin.0 * 0.95, id.skin.1 * 0.9, id.skin.2 * 0.9)
        }
        return (min(1, base.0 * shade), min(1, base.1 * shade), min(1, base.2 * shade))
    }

    /// Where the hair shell is solid (canonical point on the shell).
    @inline(__always)
    private func hairCovers(_ p: (Double, Double, Double)) -> Bool {
        let id = identity
        let (rx, _, _) = id.headRadii
        let hairline = id.hairline + 0.1 * (p.0 / rx) * (p.0 / rx)
        if p.1 < hairline { return true }
        switch id.hairStyle {
        case 1:  // long: sides and back down to the shoulders, never over the face
            return p.2 > -0.12 && p.1 < 0.55 && abs(p.0) > rx * 0.78 || p.2 > 0.12 && p.1 < 0.6
        case 2:
            return false
        default:
            return p.2 > 0.1 && p.1 < 0.25
        }
    }

    /// Skin with eyes, brows, mouth and a little blush painted in canonical (x, y).
    private func skinColor(_ p: (Double, Double, Double), _ st: PortraitState, _ mouth: (w: Double, open: Double, lift: Double)) -> (Double, Double, Double) {
        let id = identity
        let skin = id.skin
        if p.2 > -0.05 { return skin }  // sides/back: no features
        let u = p.0, v = p.1
        // Eyes.
        for k in 0..<2 {
            let side = k == 0 ? -1.0 : 1.0
            let ex = side * id.eyeX
            let du = (u - ex) / id.eyeW, dv = (v - id.eyeY) / id.eyeH
            let r2 = du * du + dv * dv
            if r2 < 1.25 {
                let open = max(st.eyeOpen, 0.04)
                let rim = 1.0 - du * du
                if rim > 0 && abs(dv) < open * rim.squareRoot() {
                    // Iris and pupil follow the gaze.
                    let gx = ex + st.gazeX * id.eyeW * 0.4, gy = id.eyeY + st.gazeY * id.eyeH * 0.35
                    let ir = id.eyeH * 0.95
                    let d2 = ((u - gx) * (u - gx) + (v - gy) * (v - gy)) / (ir * ir)
                    if d2 < 0.16 { return (0.03, 0.03, 0.04) }
                    if d2 < 1 { return id.iris }
                    return (0.94, 0.93, 0.9)
                }
                if r2 < 1 {
                    // Eyelid (closed part) and lash line.
                    if abs(dv) < st.eyeOpen * max(rim, 0).squareRoot() + 0.25 { return (skin.0 * 0.55, skin.1 * 0.45, skin.2 * 0.42) }
                    return (skin.0 * 0.88, skin.1 * 0.82, skin.2 * 0.8)
                }
            }
            // Brow: an arched band above the eye.
            let bu = (u - ex) / (id.eyeW * 1.25)
            let by = id.browY - 0.03 * st.browRaise + 0.02 * bu * bu
            if abs(bu) < 1 && abs(v - by) < id.browThickness * (1 - 0.4 * bu * bu) {
                return (id.hair.0 * 0.9, id.hair.1 * 0.9, id.hair.2 * 0.9)
            }
        }
        // Mouth: lips around an opening whose corners lift with the smile.
        let mu = u / mouth.w
        if abs(mu) < 1.1 {
            let curve = mouth.lift * mu * mu
            let dv = v - (id.mouthY - curve)
            let half = (1 - min(mu * mu, 1)).squareRoot()
            if abs(dv) < mouth.open * half {
                // Teeth show in the upper part of an open mouth.
                if dv < -mouth.open * 0.45 && mouth.open > 0.02 { return (0.92, 0.9, 0.85) }
                return (0.22, 0.05, 0.06)
            }
            if abs(dv) < (mouth.open + 0.018) * half + 0.004 { return id.lips }
        }
        // Blush on the cheeks, nostril shadow under the nose.
        let cheek = min(((abs(u) - 0.22) * (abs(u) - 0.22) + (v - 0.13) * (v - 0.13)) / 0.006, 1)
        let t = 0.08 * (1 - cheek)
        return (skin.0 * (1 - t) + 0.85 * t, skin.1 * (1 - t) + 0.35 * t, skin.2 * (1 - t) + 0.35 * t)
    }
}
