//! Test certificates, made by the `openssl` CLI.

use std::path::Path;
use std::process::Command;

/// Makes a CA (`{name}-ca.pem`) and a leaf for localhost and 127.0.0.1
/// signed by it (`{name}.pem`, `{name}.key`) in `dir`.
#[track_caller]
pub fn make_certs(dir: &Path, name: &str) {
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("the openssl CLI");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (ca, ca_key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    let (leaf, key, csr) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", &ca_key, "-out", &ca, "-days", "2"],
        &["-subj", &format!("/CN={name} test CA")],
        &["-addext", "basicConstraints=critical,CA:TRUE"],
        &["-addext", "keyUsage=critical,keyCertSign"],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &leaf,
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
}
