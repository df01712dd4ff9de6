//! S3 storage on a real Garage cluster (issue 14). So far: the cluster the replica tests will stand on,
//! three nodes on loopback with replication factor 3, proven with an independent S3 client (curl's
//! SigV4 signing) to serve its bucket from any node, to refuse a wrong secret and name a missing bucket,
//! and to keep serving with one node lost.

mod common;

use common::garage::Garage;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_three_node_garage_serves_its_bucket_from_any_node_and_with_one_node_lost() {
    if !common::e2e() {
        return;
    }
    let mut garage = Garage::start("registry");
    let one = hex(&common::random_bytes(64));
    let (said, code) = garage.curl(0, "PUT", "/probe/one", &["--data-binary", &one]);
    assert_eq!(code, "200", "PUT through node 0: {said}");
    assert_eq!(garage.curl(2, "GET", "/probe/one", &[]), (one.clone(), "200".into()));

    let (said, code) = garage.curl_as(0, (&garage.key_id, "wrong"), "GET", "/registry/probe/one", &[]);
    assert_eq!(code, "403", "a wrong secret: {said}");
    let (said, code) = garage.curl_as(1, (&garage.key_id, &garage.secret), "GET", "/no-such-bucket/x", &[]);
    assert!(said.contains("NoSuchBucket"), "a missing bucket ({code}): {said}");

    garage.kill(1);
    let two = hex(&common::random_bytes(64));
    let (said, code) = garage.curl(2, "PUT", "/probe/two", &["--data-binary", &two]);
    assert_eq!(code, "200", "PUT with node 1 lost: {said}");
    assert_eq!(garage.curl(0, "GET", "/probe/two", &[]), (two, "200".into()));
    assert_eq!(garage.curl(0, "GET", "/probe/one", &[]), (one, "200".into()));
}
