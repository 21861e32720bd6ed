<?php
// The PHP 8.1 floor (SPEC section 14: the helper is "PHP 8.1+"), checked on a newer PHP:
// php-cli on this system is 8.2 or later, and `php -l` accepts whatever that version does.
// This reads the files with PHP's own tokenizer and refuses what PHP 8.1 would not run:
// syntax added in 8.2 to 8.4, and functions (unless guarded by function_exists) and classes
// added since. Prints one line per finding and exits 1 if there is any. tests/php_helper.rs
// also runs it on samples of each construct, so that it is seen to find them.
//
// Usage: php floor.php FILE...
declare(strict_types=1);

/** Functions PHP 8.1 does not have (core and the extensions a Debian php-cli loads). */
const NEWER_FUNCTIONS = [
    // 8.2
    'ini_parse_quantity', 'memory_reset_peak_usage', 'curl_upkeep', 'mysqli_execute_query',
    'openssl_cipher_key_length', 'libxml_get_external_entity_loader',
    'sodium_crypto_stream_xchacha20_xor_ic',
    // 8.3
    'json_validate', 'mb_str_pad', 'str_increment', 'str_decrement',
    'stream_context_set_options', 'posix_sysconf', 'posix_pathconf', 'posix_fpathconf',
    'posix_eaccess', 'socket_atmark', 'mb_trim',
    // 8.4
    'array_find', 'array_find_key', 'array_any', 'array_all', 'mb_ltrim', 'mb_rtrim',
    'mb_ucfirst', 'mb_lcfirst', 'bcdivmod', 'bcround', 'bcceil', 'bcfloor', 'fpow',
    'http_get_last_response_headers', 'http_clear_last_response_headers',
    'request_parse_body', 'grapheme_str_split',
];

/** Classes, interfaces and enums PHP 8.1 does not have (lower case, no leading `\`). */
const NEWER_CLASSES = [
    'random\\randomizer', 'random\\engine', 'random\\engine\\secure', 'random\\engine\\mt19937',
    'random\\engine\\pcgoneseq128xslrr64', 'random\\engine\\xoshiro256starstar',
    'random\\cryptosafeengine', 'random\\randomerror', 'random\\brokenrandomengineerror',
    'random\\randomexception', 'roundingmode', 'bcmath\\number', 'dom\\htmldocument',
    'dom\\xmldocument', 'pdo\\mysql', 'pdo\\pgsql', 'pdo\\sqlite',
];

/** The significant tokens of a file: [id or char, text, line]. */
function significant(string $code): array
{
    $out = [];
    foreach (PhpToken::tokenize($code) as $t) {
        if (!$t->isIgnorable()) {
            $out[] = $t;
        }
    }
    return $out;
}

/** The index of the `)` (or `]`, `}`) that closes the bracket at $i. */
function closing(array $t, int $i): int
{
    $depth = 0;
    for ($j = $i, $n = count($t); $j < $n; $j++) {
        if (in_array($t[$j]->text, ['(', '[', '{'], true) || $t[$j]->id === T_CURLY_OPEN
            || $t[$j]->id === T_DOLLAR_OPEN_CURLY_BRACES) {
            $depth++;
        } elseif (in_array($t[$j]->text, [')', ']', '}'], true)) {
            $depth--;
            if ($depth === 0) {
                return $j;
            }
        }
    }
    return count($t) - 1;
}

/**
 * The type declarations of a file: each a list of tokens (parameter, return and property
 * types), found by where they stand.
 */
function types(array $t): array
{
    $found = [];
    $n = count($t);
    $typeTokens = [T_STRING, T_NAME_QUALIFIED, T_NAME_FULLY_QUALIFIED, T_ARRAY, T_CALLABLE,
        T_STATIC];
    $isTypeToken = static fn (PhpToken $x) => in_array($x->id, $typeTokens, true)
        || in_array($x->text, ['?', '|', '&', '(', ')'], true)
        || in_array(strtolower($x->text), ['null', 'false', 'true'], true);
    for ($i = 0; $i < $n; $i++) {
        if ($t[$i]->id !== T_FUNCTION && $t[$i]->id !== T_FN) {
            continue;
        }
        $open = $i + 1;
        while ($open < $n && $t[$open]->text !== '(') {
            $open++;
        }
        $close = closing($t, $open);
        // Parameters: the type tokens right before each variable.
        for ($j = $open + 1; $j < $close; $j++) {
            if ($t[$j]->id !== T_VARIABLE) {
                continue;
            }
            $k = $j - 1;
            while ($k > $open && in_array($t[$k]->id, [T_ELLIPSIS, T_AMPERSAND_NOT_FOLLOWED_BY_VAR_OR_VARARG,
                T_AMPERSAND_FOLLOWED_BY_VAR_OR_VARARG], true)) {
                $k--;
            }
            $type = [];
            while ($k > $open && $isTypeToken($t[$k]) && $t[$k]->text !== ',') {
                array_unshift($type, $t[$k]);
                $k--;
            }
            if ($type) {
                $found[] = $type;
            }
        }
        // The return type.
        if (($t[$close + 1]->text ?? '') === ':') {
            $type = [];
            for ($j = $close + 2; $j < $n && !in_array($t[$j]->text, ['{', ';', '=>'], true); $j++) {
                $type[] = $t[$j];
            }
            $found[] = $type;
        }
    }
    // Typed properties: a modifier, then a type, then the variable.
    $modifiers = [T_PUBLIC, T_PROTECTED, T_PRIVATE, T_READONLY, T_STATIC, T_VAR];
    for ($i = 0; $i < $n; $i++) {
        if (!in_array($t[$i]->id, $modifiers, true)) {
            continue;
        }
        $j = $i + 1;
        while ($j < $n && in_array($t[$j]->id, $modifiers, true)) {
            $j++;
        }
        $type = [];
        while ($j < $n && $t[$j]->id !== T_VARIABLE && $isTypeToken($t[$j])) {
            $type[] = $t[$j];
            $j++;
        }
        if ($type && ($t[$j]->id ?? null) === T_VARIABLE) {
            $found[] = $type;
        }
    }
    return $found;
}

/** What in $code PHP 8.1 would not run, as "line: why" strings. */
function findings(string $code): array
{
    $t = significant($code);
    $n = count($t);
    $out = [];
    // A call guarded by function_exists('name') is fine: PHP 8.1 takes the other branch.
    $guarded = [];
    for ($i = 0; $i + 2 < $n; $i++) {
        if (strtolower($t[$i]->text) === 'function_exists' && $t[$i + 1]->text === '('
            && $t[$i + 2]->id === T_CONSTANT_ENCAPSED_STRING) {
            $guarded[] = strtolower(trim($t[$i + 2]->text, '\'"'));
        }
    }
    $say = static function (PhpToken $at, string $why) use (&$out): void {
        $out[] = "{$at->line}: {$why}";
    };
    for ($i = 0; $i < $n; $i++) {
        $tok = $t[$i];
        $next = $t[$i + 1] ?? null;
        $prev = $t[$i - 1] ?? null;
        // 8.2: readonly classes.
        if ($tok->id === T_READONLY && $next !== null
            && ($next->id === T_CLASS || in_array($next->id, [T_FINAL, T_ABSTRACT], true))) {
            $say($tok, 'a readonly class (PHP 8.2)');
        }
        // 8.2: constants in traits.
        if ($tok->id === T_TRAIT) {
            $open = $i;
            while ($open < $n && $t[$open]->text !== '{') {
                $open++;
            }
            $end = closing($t, $open);
            for ($j = $open; $j < $end; $j++) {
                if ($t[$j]->id === T_CONST) {
                    $say($t[$j], 'a constant in a trait (PHP 8.2)');
                }
            }
        }
        // 8.3: typed class constants (`const TYPE NAME = ...`).
        if ($tok->id === T_CONST) {
            $j = $i + 1;
            $names = 0;
            while ($j < $n && $t[$j]->text !== '=' && $t[$j]->text !== ';') {
                if (in_array($t[$j]->id, [T_STRING, T_NAME_QUALIFIED, T_NAME_FULLY_QUALIFIED, T_ARRAY], true)
                    || in_array($t[$j]->text, ['?', '|'], true)) {
                    $names++;
                }
                $j++;
            }
            if ($names > 1) {
                $say($tok, 'a typed class constant (PHP 8.3)');
            }
        }
        // 8.3: dynamic class constant fetch (`Foo::{$name}`).
        if ($tok->id === T_DOUBLE_COLON && $next !== null && $next->text === '{') {
            $say($tok, 'a dynamic class constant fetch (PHP 8.3)');
        }
        // 8.4: asymmetric visibility (`private(set)`; one token from 8.4 on, four before).
        $visibility = in_array($tok->id, [T_PUBLIC, T_PROTECTED, T_PRIVATE], true);
        $set = $next !== null && $next->text === '(' && strtolower($t[$i + 2]->text ?? '') === 'set';
        if (($visibility && $set) || preg_match('/^(public|protected|private)\(set\)$/i', $tok->text)) {
            $say($tok, 'asymmetric visibility (PHP 8.4)');
        }
        // 8.4: `new Foo()->bar()` without parentheses around the `new`.
        if ($tok->id === T_NEW && ($prev === null || $prev->text !== '(')) {
            $j = $i + 1;
            while ($j < $n && !in_array($t[$j]->text, ['(', ';', ',', ')'], true)) {
                $j++;
            }
            if (($t[$j]->text ?? '') === '(') {
                $after = $t[closing($t, $j) + 1] ?? null;
                if ($after !== null && (in_array($after->id, [T_OBJECT_OPERATOR, T_NULLSAFE_OBJECT_OPERATOR, T_DOUBLE_COLON], true)
                    || $after->text === '[')) {
                    $say($tok, 'a member of `new` without parentheses (PHP 8.4)');
                }
            }
        }
        // Functions newer than 8.1, called (not methods, not declarations).
        if ($tok->id === T_STRING || $tok->id === T_NAME_FULLY_QUALIFIED) {
            $name = strtolower(ltrim($tok->text, '\\'));
            $called = $next !== null && $next->text === '(';
            $member = $prev !== null && in_array($prev->id, [T_OBJECT_OPERATOR, T_NULLSAFE_OBJECT_OPERATOR, T_DOUBLE_COLON, T_FUNCTION, T_NEW], true);
            if ($called && !$member && in_array($name, NEWER_FUNCTIONS, true)
                && !in_array($name, $guarded, true)) {
                $say($tok, "{$name}() (after PHP 8.1)");
            }
        }
        // Classes newer than 8.1.
        if (in_array($tok->id, [T_STRING, T_NAME_QUALIFIED, T_NAME_FULLY_QUALIFIED], true)
            && in_array(strtolower(ltrim($tok->text, '\\')), NEWER_CLASSES, true)) {
            $say($tok, "{$tok->text} (after PHP 8.1)");
        }
    }
    foreach (types($t) as $type) {
        $words = array_map(fn ($x) => strtolower($x->text), $type);
        $text = implode('', $words);
        if (in_array('(', $words, true)) {
            $say($type[0], "a DNF type {$text} (PHP 8.2)");
        }
        if (in_array('true', $words, true)) {
            $say($type[0], "the type true in {$text} (PHP 8.2)");
        }
        $alone = array_values(array_filter($words, fn ($w) => $w !== '?'));
        if (count($alone) === 1 && in_array($alone[0], ['null', 'false'], true)) {
            $say($type[0], "the type {$alone[0]} on its own (PHP 8.2)");
        }
    }
    // 8.4: property hooks (`public string $x { get => ...; }`).
    for ($i = 0; $i < $n; $i++) {
        if ($t[$i]->id === T_VARIABLE && ($t[$i + 1]->text ?? '') === '{'
            && in_array(strtolower($t[$i + 2]->text ?? ''), ['get', 'set', '&'], true)) {
            $say($t[$i], 'a property hook (PHP 8.4)');
        }
    }
    return $out;
}

$failed = false;
foreach (array_slice($argv, 1) as $file) {
    foreach (findings((string) file_get_contents($file)) as $finding) {
        echo "{$file}:{$finding}\n";
        $failed = true;
    }
}
exit($failed ? 1 : 0);
