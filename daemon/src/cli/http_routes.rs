//! `vigil http-routes` (hidden): the HTTPS routes and who may call them.

use super::Failure;

pub fn run() -> Result<(), Failure> {
    for r in crate::web::api::ROUTES {
        let access = match r.access {
            crate::web::auth::Access::Public => "public",
            crate::web::auth::Access::At(role) => role.as_str(),
        };
        println!("{} {} {access}", r.method, r.path);
    }
    Ok(())
}
