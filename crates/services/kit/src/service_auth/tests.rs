use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::FromRequestParts;
use http::{Request, StatusCode};

use super::{Caller, KeyPair, ServiceCaller, ServiceClaims, ServiceSigner, ServiceVerifier, TrustedKey};
use crate::auth::{JwtKeys, Role};

fn trusted(kid: &str, issuer: &str, pair: &KeyPair, scopes: &[&str]) -> BTreeMap<String, TrustedKey> {
    let key = TrustedKey {
        issuer: issuer.to_owned(),
        public_key: pair.public_key(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    };
    BTreeMap::from([(kid.to_owned(), key)])
}

async fn caller(token: &str, verifier: &ServiceVerifier, keys: &JwtKeys) -> Result<Caller, StatusCode> {
    let req = Request::builder().header("authorization", format!("Bearer {token}")).body(()).unwrap();
    let (mut parts, ()) = req.into_parts();
    parts.extensions.insert(verifier.clone());
    parts.extensions.insert(keys.clone());
    Caller::from_request_parts(&mut parts, &()).await.map_err(|e| e.status())
}

#[tokio::test]
async fn a_service_token_works_only_for_its_audience_its_trusted_key_and_the_allowed_scopes() {
    let orders = KeyPair::generate().unwrap();
    let signer = ServiceSigner::new("orders", "orders-1", &orders);
    let inventory =
        ServiceVerifier::new("inventory", &trusted("orders-1", "orders", &orders, &["inventory:reserve"]))
            .unwrap();
    let users = JwtKeys::new(b"user-token-secret-of-at-least-32-bytes", Duration::from_secs(60));

    let token = signer.token("inventory", &["inventory:reserve", "inventory:adjust"]).unwrap();
    assert_eq!(
        signer.token("inventory", &["inventory:reserve", "inventory:adjust"]).unwrap(),
        token,
        "cached"
    );
    let caller = caller(&token, &inventory, &users).await.unwrap();
    assert_eq!(
        caller,
        Caller::Service(ServiceCaller { name: "orders".into(), scopes: vec!["inventory:reserve".into()] }),
        "a scope the callee does not allow this key is dropped"
    );
    assert!(caller.require("inventory:reserve").is_ok());
    assert_eq!(caller.require("inventory:adjust").unwrap_err().status(), StatusCode::FORBIDDEN);
    assert_eq!(caller.actor(), "service:orders");

    let for_catalog = signer.token("catalog", &["inventory:reserve"]).unwrap();
    let err = inventory.verify(&for_catalog).unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(err.problem().detail.as_deref(), Some("the service token is meant for another service"));

    // The same kid, another private key: a forgery.
    let forged = ServiceSigner::new("orders", "orders-1", &KeyPair::generate().unwrap());
    let forged = forged.token("inventory", &["inventory:reserve"]).unwrap();
    assert_eq!(inventory.verify(&forged).unwrap_err().status(), StatusCode::UNAUTHORIZED);
    // A trusted key claiming to be another issuer.
    let impostor = ServiceSigner::new("payments", "orders-1", &orders)
        .token("inventory", &["inventory:reserve"])
        .unwrap();
    assert_eq!(inventory.verify(&impostor).unwrap_err().status(), StatusCode::UNAUTHORIZED);
    let unknown = ServiceSigner::new("orders", "orders-2", &orders).token("inventory", &[]).unwrap();
    assert_eq!(
        inventory.verify(&unknown).unwrap_err().problem().detail.as_deref(),
        Some("the service token's key is not trusted here")
    );
}

#[tokio::test]
async fn expired_tokens_are_refused_and_keys_round_trip_through_their_text() {
    let pair = KeyPair::generate().unwrap();
    let again = KeyPair::from_seed(pair.seed().expose()).unwrap();
    assert_eq!(again.public_key(), pair.public_key());
    assert!(KeyPair::from_seed("short").is_err());
    let verifier =
        ServiceVerifier::new("payments", &trusted("o", "orders", &pair, &["payments:charge"])).unwrap();
    let claims = ServiceClaims {
        iss: "orders".into(),
        aud: "payments".into(),
        scope: "payments:charge".into(),
        iat: 1,
        exp: 2,
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("o".into());
    let expired = jsonwebtoken::encode(&header, &claims, &pair.encoding_key()).unwrap();
    assert_eq!(
        verifier.verify(&expired).unwrap_err().problem().detail.as_deref(),
        Some("the service token has expired")
    );
    assert!(ServiceVerifier::new("payments", &trusted("o", "orders", &pair, &[])).is_ok());
    let mut bad = trusted("o", "orders", &pair, &[]);
    bad.get_mut("o").unwrap().public_key = "not-a-key".into();
    assert!(ServiceVerifier::new("payments", &bad).is_err());
    assert!(!format!("{pair:?}").contains(pair.seed().expose().as_str()), "Debug shows no seed");
}

#[tokio::test]
async fn admins_pass_customers_are_forbidden() {
    let verifier = ServiceVerifier::new("payments", &BTreeMap::new()).unwrap();
    let keys = JwtKeys::new(b"user-token-secret-of-at-least-32-bytes", Duration::from_secs(60));
    let admin = keys.issue("a1", "a@example.com", Role::Admin).unwrap();
    let customer = keys.issue("c1", "c@example.com", Role::Customer).unwrap();
    let admin = caller(&admin, &verifier, &keys).await.unwrap();
    assert!(admin.require("payments:charge").is_ok());
    assert_eq!(admin.actor(), "a1");
    assert_eq!(caller(&customer, &verifier, &keys).await, Err(StatusCode::FORBIDDEN));
    assert_eq!(caller("garbage", &verifier, &keys).await, Err(StatusCode::UNAUTHORIZED));
}
