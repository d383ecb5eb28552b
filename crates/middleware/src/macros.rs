//! Macros shared by the layer modules.

/// `get_ref`, `get_mut` and `into_inner` for a service wrapper whose inner service is the field
/// `inner` of type `S` (the first generic parameter); further type parameters are listed after it.
macro_rules! inner_accessors {
    ($service:ident $(, $param:ident)*) => {
        impl<S $(, $param)*> $service<S $(, $param)*> {
            /// The inner service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// The inner service, mutably.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }

            /// Consumes `self`, returning the inner service.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}
