<?php

/**
 * RakitWebSocketCommand: `php rakit websocket:run` for Rakit applications, served by the
 * rakit-websocket daemon (SPEC section 18). One file, PHP 8.1+, no Composer.
 *
 * Register it in application/boot.php (Rakit's console registers its own `command: websocket`
 * only when none is registered yet, and boots the application first):
 *
 *     require_once '/path/to/clients/php/RakitWebSocketCommand.php';
 *     System\Container::singleton('command: websocket', function () { return new RakitWebSocketCommand(); });
 *
 * Then:
 *
 *     php rakit websocket:run [--host=H] [--port=P]   the daemon, in the foreground
 *     php rakit websocket:check [--host=H] [--port=P] the effective daemon settings, checked
 *
 * The settings are the application's own `Config::get('websocket')` (application/config/
 * websocket.php, environment overrides included), mapped key by key onto the daemon's
 * (`map()` below; README.md, "Rakit applications"). Keys the daemon has no equivalent for are
 * reported once on stderr and ignored. The daemon is the `rakit` binary of rakit-websocket:
 * `RAKIT_WS_BIN`, or `rakit` on PATH.
 *
 * `run` starts the daemon as a child and waits for it: its output is the daemon's (the listen
 * line first), SIGINT, SIGTERM and SIGQUIT are passed on to it, SIGHUP maps websocket.php
 * again before passing it on (the daemon then reloads what it can), and the exit status is the
 * daemon's (passing signals on needs the pcntl extension, which Debian's php-cli has). Errors found before the daemon starts (a websocket.php that is not an array of
 * settings, a value of the wrong kind, no daemon binary) are one line on stderr and exit 2.
 */

declare(strict_types=1);

/** A websocket.php the daemon cannot be configured from, or no daemon to run. */
final class RakitWebSocketCommandError extends RuntimeException
{
}

final class RakitWebSocketCommand extends System\Console\Commands\Command
{
    /** Exit status for errors found before the daemon runs (the daemon's own for config errors). */
    public const EXIT_CONFIG = 2;

    /** Rakit's `ping_timeout` N > 0: the daemon pings after N silent seconds, then waits this long at most. */
    private const PONG_WAIT = 10;

    /** Keys of application/config/websocket.php that the Rakit package itself defines. */
    private const RAKIT_KEYS = [
        'max_buffer_size', 'origin_required', 'protocol_required', 'extensions_required',
        'allowed_origins', 'allowed_hosts', 'supported_protocols', 'supported_extensions',
        'ping_timeout', 'logging_enabled', 'logging_output',
    ];

    /**
     * The daemon's own keys (SPEC section 2 and its tables) a websocket.php may also set; they
     * are passed through as they are. A Rakit key of the same name keeps its Rakit meaning.
     */
    private const DAEMON_KEYS = [
        'host', 'port', 'max_handshake_size', 'max_connections', 'max_http_connections',
        'max_send_buffer',
        'max_channels_per_client', 'ping_interval', 'handshake_timeout', 'presence',
        'presence_interval_ms', 'presence_max_users', 'command_policy', 'logging_file',
        'logging_level', 'demo_page', 'compression', 'compression_level', 'compression_min_size',
        'session', 'api', 'metrics', 'webhooks', 'cluster', 'pusher', 'tls', 'limits', 'namespaces',
        'history',
    ];

    /** The daemon's tables: an empty PHP array there is an empty table, not an empty list. */
    private const TABLES = ['session', 'api', 'metrics', 'webhooks', 'cluster', 'pusher', 'tls', 'limits', 'history'];

    /** Unsupported keys already reported (each once per process, also across SIGHUP). */
    private array $reported = [];

    /** `php rakit websocket:run [--host=H] [--port=P]`. Does not return: exits with the daemon's status. */
    public function run(array $arguments = [])
    {
        exit($this->guard(function (): int {
            $binary = self::daemonBinary();
            $file = $this->writeConfig(null);
            try {
                return $this->serve($binary, $file);
            } finally {
                @unlink($file);
            }
        }));
    }

    /** `php rakit websocket:check [--host=H] [--port=P]`: the daemon's `websocket:check` of the mapped settings. */
    public function check(array $arguments = [])
    {
        exit($this->guard(function (): int {
            $binary = self::daemonBinary();
            $file = $this->writeConfig(null);
            try {
                $process = proc_open([$binary, 'websocket:check', '--config=' . $file], [STDIN, STDOUT, STDERR], $pipes);
                if (!is_resource($process)) {
                    throw new RakitWebSocketCommandError("cannot start {$binary}");
                }
                return proc_close($process);
            } finally {
                @unlink($file);
            }
        }));
    }

    /**
     * Maps the value of `Config::get('websocket')` onto the daemon's settings: returns
     * `['toml' => the daemon's config file, 'unsupported' => [key => why]]`. `$options` are the
     * command line's `host` and `port`, which win over the file. Throws
     * RakitWebSocketCommandError naming websocket.php for anything that is not an array of
     * named settings of the right kinds. `$storage` is the application's storage directory
     * (for the log file with `'logging_output' => 'file'`).
     */
    public static function map(mixed $config, array $options = [], string $storage = 'storage'): array
    {
        if ($config === null) {
            $config = []; // Rakit's loader: no file, or an empty array
        }
        if (!is_array($config)) {
            throw self::invalid('must return an array of settings (\'max_buffer_size\' => 65536, ...), not ' . get_debug_type($config));
        }
        foreach (array_keys($config) as $key) {
            if (!is_string($key)) {
                // Rakit's loader turns a file that returns a string, a number or true into a list.
                throw self::invalid('must return an array of settings by name (\'max_buffer_size\' => 65536, ...), '
                    . 'but it has an entry without a name (' . var_export($key, true) . ')');
            }
        }
        $out = [];
        $unsupported = [];
        foreach ($config as $key => $value) {
            switch ($key) {
                case 'max_buffer_size':
                    $out[$key] = self::integer($key, $value);
                    break;
                case 'origin_required':
                case 'logging_enabled':
                    $out[$key] = self::boolean($key, $value);
                    break;
                case 'allowed_origins':
                case 'allowed_hosts':
                case 'supported_protocols':
                    $out[$key] = self::strings($key, $value);
                    break;
                case 'supported_extensions':
                    // permessage-deflate is the extension the daemon has (`compression`).
                    $others = [];
                    foreach (self::strings($key, $value) as $extension) {
                        if (strcasecmp($extension, 'permessage-deflate') === 0) {
                            $out['compression'] = true;
                        } else {
                            $others[] = $extension;
                        }
                    }
                    if ($others !== []) {
                        $unsupported[$key] = 'only permessage-deflate is supported, not ' . implode(', ', $others);
                    }
                    break;
                case 'protocol_required':
                case 'extensions_required':
                    self::boolean($key, $value);
                    $unsupported[$key] = 'no equivalent (a client that offers no supported one is served without it)';
                    break;
                case 'ping_timeout':
                    // Rakit: seconds of silence before a client is dropped, 0 for never. The
                    // daemon pings a silent client, and drops it if the ping is not answered.
                    $seconds = self::integer($key, $value);
                    $out['ping_interval'] = $seconds;
                    if ($seconds > 0) {
                        $out['ping_timeout'] = min($seconds, self::PONG_WAIT);
                    }
                    break;
                case 'logging_output':
                    $output = self::text($key, $value);
                    if ($output !== 'stdout' && $output !== 'file') {
                        throw self::invalid("'logging_output' must be 'stdout' or 'file', not '{$output}'");
                    }
                    $out[$key] = $output;
                    break;
                default:
                    if (!in_array($key, self::DAEMON_KEYS, true)) {
                        $unsupported[$key] = 'no such setting in rakit-websocket';
                        break;
                    }
                    self::plain($key, $value);
                    $out[$key] = $value;
            }
        }
        // A log file in the application's storage, as Rakit's own file logging writes there.
        if (($out['logging_output'] ?? '') === 'file' && !isset($out['logging_file'])) {
            $out['logging_file'] = rtrim($storage, '/') . '/logs/websocket.log';
        }
        if (isset($options['host'])) {
            $out['host'] = $options['host'];
        }
        if (isset($options['port'])) {
            $out['port'] = $options['port'];
        }
        return ['toml' => self::toml($out), 'unsupported' => $unsupported];
    }

    /** The daemon binary: `RAKIT_WS_BIN`, or `rakit` on PATH (not a PHP script of that name: the application's own front script). */
    public static function daemonBinary(): string
    {
        $configured = getenv('RAKIT_WS_BIN');
        if (is_string($configured) && $configured !== '') {
            if (!is_file($configured) || !is_executable($configured)) {
                throw new RakitWebSocketCommandError("RAKIT_WS_BIN={$configured} is not an executable file");
            }
            return $configured;
        }
        $self = realpath((string) ($_SERVER['SCRIPT_FILENAME'] ?? '')) ?: null;
        foreach (explode(PATH_SEPARATOR, (string) getenv('PATH')) as $dir) {
            $candidate = ($dir === '' ? '.' : rtrim($dir, '/')) . '/rakit';
            if (!is_file($candidate) || !is_executable($candidate) || realpath($candidate) === $self) {
                continue;
            }
            $head = (string) @file_get_contents($candidate, false, null, 0, 128);
            if (str_starts_with($head, '<?php') || (str_starts_with($head, '#!') && str_contains(strtok($head, "\n"), 'php'))) {
                continue;
            }
            return $candidate;
        }
        throw new RakitWebSocketCommandError('no rakit-websocket daemon found: set RAKIT_WS_BIN to its `rakit` binary '
            . '(`cargo install --path . --locked` puts it in ~/.cargo/bin), or put that directory on PATH');
    }

    // ---- Running the daemon -----------------------------------------------------------------

    /** Runs `$work`; a RakitWebSocketCommandError becomes one line on stderr and EXIT_CONFIG. */
    private function guard(callable $work): int
    {
        try {
            return $work();
        } catch (RakitWebSocketCommandError $e) {
            fwrite(STDERR, 'rakit-websocket: ' . $e->getMessage() . PHP_EOL);
            return self::EXIT_CONFIG;
        }
    }

    /**
     * Maps websocket.php into a daemon config file: a new private one (`$file` null), or
     * replacing `$file` whole (rename, so the daemon never reads half of it). Returns its path.
     */
    private function writeConfig(?string $file): string
    {
        $mapped = self::map(System\Config::get('websocket'), self::options(), self::storageDir());
        foreach ($mapped['unsupported'] as $key => $why) {
            if (!isset($this->reported[$key])) {
                $this->reported[$key] = true;
                fwrite(STDERR, "rakit-websocket: websocket.php: ignoring '{$key}': {$why}" . PHP_EOL);
            }
        }
        $target = $file ?? tempnam(sys_get_temp_dir(), 'rakit-websocket.php-');
        $tmp = $file === null ? $target : tempnam(dirname($file), 'rakit-websocket.php-');
        if ($target === false || $tmp === false || file_put_contents($tmp, $mapped['toml']) === false
            || ($tmp !== $target && !rename($tmp, $target))) {
            throw new RakitWebSocketCommandError('cannot write the daemon\'s config file in ' . sys_get_temp_dir());
        }
        return $target;
    }

    /** The signals passed on to the daemon. */
    private const FORWARDED = [SIGINT, SIGTERM, SIGQUIT, SIGHUP];

    /** Starts the daemon with `$file` and waits for it; its exit status (128 + N after signal N). */
    private function serve(string $binary, string $file): int
    {
        $process = proc_open([$binary, 'websocket:run', '--config=' . $file], [STDIN, STDOUT, STDERR], $pipes);
        if (!is_resource($process)) {
            throw new RakitWebSocketCommandError("cannot start {$binary}");
        }
        if (!function_exists('pcntl_sigtimedwait')) {
            // Without pcntl nothing is passed on; a terminal's Ctrl-C reaches both processes anyway.
            return proc_close($process);
        }
        $pid = proc_get_status($process)['pid'];
        // Blocked (after the start: the daemon must not inherit the mask) and taken one by one
        // below, with the child's exit (SIGCHLD): no signal can slip between a check and a wait.
        $waited = [...self::FORWARDED, SIGCHLD];
        pcntl_sigprocmask(SIG_BLOCK, $waited);
        while (true) {
            $status = 0;
            $done = pcntl_waitpid($pid, $status, WNOHANG);
            if ($done === $pid) {
                break;
            }
            if ($done === -1) {
                return 1; // not our child any more: nothing to report
            }
            $signal = pcntl_sigtimedwait($waited, $info, 1);
            if (!in_array($signal, self::FORWARDED, true)) {
                continue; // SIGCHLD, or a second passed: look again
            }
            if ($signal === SIGHUP && !$this->remap($file)) {
                continue;
            }
            proc_terminate($process, $signal);
        }
        if (pcntl_wifexited($status)) {
            return pcntl_wexitstatus($status);
        }
        return pcntl_wifsignaled($status) ? 128 + pcntl_wtermsig($status) : 1;
    }

    /** SIGHUP: websocket.php mapped again; false (and why, on stderr) if it cannot be. */
    private function remap(string $file): bool
    {
        clearstatcache();
        try {
            $this->writeConfig($file);
            return true;
        } catch (RakitWebSocketCommandError $e) {
            fwrite(STDERR, 'rakit-websocket: SIGHUP: ' . $e->getMessage() . '; the daemon keeps its settings' . PHP_EOL);
            return false;
        }
    }

    /** `--host=H` / `--host H` and `--port=P` / `--port P` of the command line. */
    private static function options(): array
    {
        $argv = $_SERVER['argv'] ?? [];
        $found = [];
        for ($i = 0; $i < count($argv); $i++) {
            foreach (['host', 'port'] as $name) {
                $value = null;
                if (str_starts_with((string) $argv[$i], "--{$name}=")) {
                    $value = substr((string) $argv[$i], strlen($name) + 3);
                } elseif ($argv[$i] === "--{$name}" && isset($argv[$i + 1])) {
                    $value = (string) $argv[++$i];
                }
                if ($value !== null) {
                    $found[$name] = $value;
                }
            }
        }
        if (isset($found['port'])) {
            if (!ctype_digit($found['port']) || (int) $found['port'] > 65535) {
                throw new RakitWebSocketCommandError("--port: '{$found['port']}' is not a port number (0 to 65535)");
            }
            $found['port'] = (int) $found['port'];
        }
        if (isset($found['host']) && $found['host'] === '') {
            throw new RakitWebSocketCommandError('--host: missing value');
        }
        return $found;
    }

    /** The application's storage directory: Rakit's `path('storage')`, else storage/ beside the `rakit` script. */
    private static function storageDir(): string
    {
        if (function_exists('path')) {
            return (string) path('storage');
        }
        return dirname(realpath((string) ($_SERVER['SCRIPT_FILENAME'] ?? '.')) ?: '.') . '/storage';
    }

    // ---- Values -------------------------------------------------------------------------------

    private static function invalid(string $message): RakitWebSocketCommandError
    {
        return new RakitWebSocketCommandError('application/config/websocket.php: ' . $message);
    }

    private static function integer(string $key, mixed $value): int
    {
        if (is_string($value) && preg_match('/^[0-9]+$/', $value)) {
            $value = (int) $value; // environment overrides come as strings
        }
        if (!is_int($value) || $value < 0) {
            throw self::invalid("'{$key}' must be a whole number of 0 or more, not " . self::describe($value));
        }
        return $value;
    }

    private static function boolean(string $key, mixed $value): bool
    {
        if (!is_bool($value)) {
            throw self::invalid("'{$key}' must be true or false, not " . self::describe($value));
        }
        return $value;
    }

    private static function text(string $key, mixed $value): string
    {
        if (!is_string($value)) {
            throw self::invalid("'{$key}' must be a string, not " . self::describe($value));
        }
        return $value;
    }

    /** @return list<string> */
    private static function strings(string $key, mixed $value): array
    {
        if (!is_array($value) || !array_is_list($value)) {
            throw self::invalid("'{$key}' must be a list of strings, not " . self::describe($value));
        }
        foreach ($value as $item) {
            if (!is_string($item)) {
                throw self::invalid("'{$key}' must be a list of strings, but holds " . self::describe($item));
            }
        }
        return $value;
    }

    /** A value passed through: scalars, and lists and tables of them (no objects, no null). */
    private static function plain(string $key, mixed $value): void
    {
        if (is_array($value)) {
            foreach ($value as $k => $item) {
                self::plain(is_int($k) ? "{$key}[{$k}]" : "{$key}.{$k}", $item);
            }
        } elseif (!is_scalar($value) || (is_float($value) && !is_finite($value))) {
            throw self::invalid("'{$key}' must be a string, number, true/false or an array of them, not " . self::describe($value));
        }
    }

    private static function describe(mixed $value): string
    {
        return is_scalar($value) ? get_debug_type($value) . ' ' . var_export($value, true) : get_debug_type($value);
    }

    // ---- TOML ---------------------------------------------------------------------------------

    /** The daemon's config file: one `key = value` line per setting (tables inline). */
    private static function toml(array $settings): string
    {
        $lines = "# Mapped from application/config/websocket.php by RakitWebSocketCommand.\n";
        foreach ($settings as $key => $value) {
            $toml = $value === [] && in_array($key, self::TABLES, true) ? '{}' : self::value((string) $key, $value);
            $lines .= self::key((string) $key) . ' = ' . $toml . "\n";
        }
        return $lines;
    }

    private static function key(string $key): string
    {
        return preg_match('/^[A-Za-z0-9_-]+$/', $key) ? $key : self::quote($key, $key);
    }

    private static function value(string $key, mixed $value): string
    {
        if (is_bool($value)) {
            return $value ? 'true' : 'false';
        }
        if (is_int($value)) {
            return (string) $value;
        }
        if (is_float($value)) {
            return json_encode($value, JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR);
        }
        if (is_string($value)) {
            return self::quote($key, $value);
        }
        if (array_is_list($value)) {
            return '[' . implode(', ', array_map(fn ($v) => self::value($key, $v), $value)) . ']';
        }
        $pairs = [];
        foreach ($value as $k => $v) {
            $pairs[] = self::key((string) $k) . ' = ' . self::value("{$key}.{$k}", $v);
        }
        return '{ ' . implode(', ', $pairs) . ' }';
    }

    /** A TOML basic string. */
    private static function quote(string $key, string $text): string
    {
        if (!preg_match('//u', $text)) {
            throw self::invalid("'{$key}' is not UTF-8 text");
        }
        $escaped = preg_replace_callback('/[\x00-\x1f\x7f"\\\\]/', function (array $m): string {
            return match ($m[0]) {
                '"' => '\\"',
                '\\' => '\\\\',
                "\n" => '\\n',
                "\t" => '\\t',
                "\r" => '\\r',
                default => sprintf('\\u%04X', ord($m[0])),
            };
        }, $text);
        return '"' . $escaped . '"';
    }
}
