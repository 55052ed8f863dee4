//! Enums whose numbers cross the kernel/user boundary, declared once: each
//! variant's number and its name for metrics, listings and configs, with the
//! list of all variants and the lookup from a number.

/// Declares a `#[repr(u32)]` enum with `ALL` (in declaration order), `COUNT`,
/// `name()` and `from_id()`.
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $id:literal => $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $id ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($id),+].len()] = [$($name::$variant),+];
            pub const COUNT: usize = Self::ALL.len();

            /// The name used in metrics, listings and the config.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }

            pub const fn from_id(id: u32) -> Option<Self> {
                match id {
                    $($id => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The variant called `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.name() == name)
            }
        }
    };
}
