<?php
// Writes the "framework" case of bench/run.sh into a directory: what a request costs in a
// framework run classically (no worker mode), with every part a framework has on that path.
//
//   php bench/gen_framework.php DIR      writes DIR/fw.php and DIR/fw/...
//
// - an autoloader (spl_autoload_register, PSR-4 style: namespace prefix to directory, one
//   is_file() and require per class) over a tree of 295 generated classes;
// - a DI container that autowires constructors through Reflection, with a few explicit
//   factories and shared instances;
// - a router that matches the request against 20 routes (regular expressions);
// - a controller whose service graph pulls in every class of the tree: 100 services, each
//   depending on the previous one and a repository, 80 repositories returning entities;
// - a PHP template (a layout, a page, a partial included per card) with loops and
//   htmlspecialchars() escaping, about 28 KiB of HTML.
//
// Every request loads all the classes, builds the container and renders the page: nothing
// is kept between requests but OPcache's compiled files, as under php-fpm or mod_php.

declare(strict_types=1);

$dir = $argv[1] ?? null;
if ($dir === null || !is_dir($dir)) {
    fwrite(STDERR, "usage: php gen_framework.php EXISTING_DIR\n");
    exit(2);
}

const ENTITIES = 80;
const REPOSITORIES = 80;
const SERVICES = 100;
const CONTROLLERS = 20;

$src = "$dir/fw/src";
$files = 0;
function put(string $path, string $code): void
{
    global $files;
    @mkdir(dirname($path), 0755, true);
    file_put_contents($path, $code);
    $files++;
}

// --- contracts and support classes -----------------------------------------------------
put("$src/Contracts/Repository.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Contracts;
interface Repository
{
    /** @return list<object> */
    public function find(int $limit, int $from = 1): array;
}
PHP);
put("$src/Contracts/Service.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Contracts;
interface Service
{
    /** @return list<array<string, mixed>> */
    public function rows(): array;
}
PHP);
put("$src/Contracts/Arrayable.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Contracts;
interface Arrayable
{
    /** @return array<string, mixed> */
    public function toArray(): array;
}
PHP);
put("$src/Support/Config.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Support;
final class Config
{
    /** @param array<string, mixed> $values */
    public function __construct(private array $values) {}
    public function get(string $key, mixed $default = null): mixed
    {
        $value = $this->values;
        foreach (explode('.', $key) as $part) {
            if (!is_array($value) || !array_key_exists($part, $value)) {
                return $default;
            }
            $value = $value[$part];
        }
        return $value;
    }
}
PHP);
put("$src/Support/Clock.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Support;
final class Clock
{
    private int $epoch;
    public function __construct() { $this->epoch = 1700000000; }
    public function now(): int { return $this->epoch; }
}
PHP);
put("$src/Support/Logger.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Support;
final class Logger
{
    /** @var list<string> */
    private array $lines = [];
    public function debug(string $message, array $context = []): void
    {
        $this->lines[] = strtr($message, array_map('strval', $context));
    }
    public function count(): int { return count($this->lines); }
}
PHP);
put("$src/Support/Str.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Support;
final class Str
{
    public static function slug(string $text): string
    {
        return trim(preg_replace('/[^a-z0-9]+/', '-', strtolower($text)) ?? '', '-');
    }
    public static function limit(string $text, int $length): string
    {
        return mb_strlen($text) <= $length ? $text : mb_substr($text, 0, $length) . '…';
    }
}
PHP);
put("$src/Support/Arr.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Support;
final class Arr
{
    /** @param list<array<string, mixed>> $rows */
    public static function sortBy(array $rows, string $key): array
    {
        usort($rows, static fn (array $a, array $b): int => $a[$key] <=> $b[$key]);
        return $rows;
    }
}
PHP);
put("$src/Support/Escaper.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Support;
final class Escaper
{
    public function html(mixed $value): string
    {
        return htmlspecialchars((string) $value, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
    }
    public function attr(mixed $value): string { return $this->html($value); }
}
PHP);
put("$src/Http/Request.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Http;
final class Request
{
    /** @param array<string, string> $query */
    public function __construct(public readonly string $method, public readonly string $path, public readonly array $query) {}
    public static function fromGlobals(): self
    {
        $route = $_GET['route'] ?? '/';
        return new self($_SERVER['REQUEST_METHOD'] ?? 'GET', is_string($route) ? $route : '/', $_GET);
    }
}
PHP);
put("$src/Http/Response.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Http;
final class Response
{
    /** @param array<string, string> $headers */
    public function __construct(public readonly string $body, public readonly int $status = 200, public readonly array $headers = []) {}
    public function send(): void
    {
        http_response_code($this->status);
        foreach ($this->headers as $name => $value) {
            header("$name: $value");
        }
        echo $this->body;
    }
}
PHP);
put("$src/Http/Router.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\Http;
final class Router
{
    /** @var list<array{string, string, class-string}> */
    private array $routes = [];
    public function get(string $pattern, string $controller): void
    {
        $regex = '#^' . preg_replace('#\{(\w+)\}#', '(?P<$1>[^/]+)', $pattern) . '$#';
        $this->routes[] = ['GET', $regex, $controller];
    }
    /** @return array{class-string, array<string, string>}|null */
    public function match(Request $request): ?array
    {
        foreach ($this->routes as [$method, $regex, $controller]) {
            if ($method === $request->method && preg_match($regex, $request->path, $m)) {
                return [$controller, array_filter($m, 'is_string', ARRAY_FILTER_USE_KEY)];
            }
        }
        return null;
    }
}
PHP);
put("$src/View/Renderer.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw\View;
use Fw\Support\Escaper;
final class Renderer
{
    public function __construct(private string $templates, private Escaper $escaper) {}
    /** @param array<string, mixed> $data */
    public function render(string $template, array $data): string
    {
        $e = $this->escaper->html(...);
        $partial = function (string $name, array $vars) use ($e): void {
            extract($vars);
            include $this->templates . "/$name.php";
        };
        ob_start();
        (function () use ($template, $data, $e, $partial): void {
            extract($data);
            include $this->templates . "/$template.php";
        })();
        $content = (string) ob_get_clean();
        ob_start();
        (function () use ($data, $e, $content): void {
            extract($data);
            include $this->templates . '/layout.php';
        })();
        return (string) ob_get_clean();
    }
}
PHP);
put("$src/Container.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw;
use Closure;
use ReflectionClass;
use ReflectionNamedType;
use RuntimeException;
/** A container as frameworks have them: explicit factories, shared instances, autowiring. */
final class Container
{
    /** @var array<string, Closure> */
    private array $factories = [];
    /** @var array<string, object> */
    private array $shared = [];
    public function factory(string $id, Closure $factory): void { $this->factories[$id] = $factory; }
    public function instance(string $id, object $object): void { $this->shared[$id] = $object; }
    public function get(string $id): object
    {
        if (isset($this->shared[$id])) {
            return $this->shared[$id];
        }
        $object = isset($this->factories[$id]) ? ($this->factories[$id])($this) : $this->autowire($id);
        return $this->shared[$id] = $object;
    }
    private function autowire(string $class): object
    {
        $reflection = new ReflectionClass($class);
        if (!$reflection->isInstantiable()) {
            throw new RuntimeException("$class cannot be built");
        }
        $constructor = $reflection->getConstructor();
        if ($constructor === null) {
            return new $class();
        }
        $args = [];
        foreach ($constructor->getParameters() as $parameter) {
            $type = $parameter->getType();
            if ($type instanceof ReflectionNamedType && !$type->isBuiltin()) {
                $args[] = $this->get($type->getName());
            } elseif ($parameter->isDefaultValueAvailable()) {
                $args[] = $parameter->getDefaultValue();
            } else {
                throw new RuntimeException("$class: cannot resolve \${$parameter->getName()}");
            }
        }
        return $reflection->newInstanceArgs($args);
    }
}
PHP);
put("$src/Kernel.php", <<<'PHP'
<?php
declare(strict_types=1);
namespace Fw;
use Fw\Http\Request;
use Fw\Http\Response;
use Fw\Http\Router;
final class Kernel
{
    public function __construct(private Container $container, private Router $router) {}
    public function handle(Request $request): Response
    {
        $match = $this->router->match($request);
        if ($match === null) {
            return new Response('not found', 404);
        }
        [$controller, $params] = $match;
        $body = $this->container->get($controller)($request, $params);
        return new Response($body, 200, ['Content-Type' => 'text/html; charset=UTF-8']);
    }
}
PHP);

// --- entities, repositories, services, controllers -------------------------------------
for ($i = 1; $i <= ENTITIES; $i++) {
    put("$src/Model/Entity$i.php", <<<PHP
<?php
declare(strict_types=1);
namespace Fw\Model;
use Fw\Contracts\Arrayable;
final class Entity$i implements Arrayable
{
    public function __construct(
        private int \$id,
        private string \$name,
        private string \$email,
        private float \$price,
        private bool \$active,
    ) {}
    public function id(): int { return \$this->id; }
    public function name(): string { return \$this->name; }
    public function toArray(): array
    {
        return ['id' => \$this->id, 'kind' => 'entity$i', 'name' => \$this->name, 'email' => \$this->email,
            'price' => number_format(\$this->price, 2), 'active' => \$this->active];
    }
}
PHP);
}
for ($i = 1; $i <= REPOSITORIES; $i++) {
    put("$src/Repository/Repository$i.php", <<<PHP
<?php
declare(strict_types=1);
namespace Fw\Repository;
use Fw\Contracts\Repository;
use Fw\Model\Entity$i;
use Fw\Support\Clock;
use Fw\Support\Config;
final class Repository$i implements Repository
{
    public function __construct(private Clock \$clock, private Config \$config) {}
    public function find(int \$limit, int \$from = 1): array
    {
        \$rows = [];
        \$seed = \$this->clock->now() % 97 + (int) \$this->config->get('app.seed', 0);
        for (\$n = \$from; \$n < \$from + \$limit; \$n++) {
            \$id = $i * 1000 + \$n;
            \$rows[] = new Entity$i(\$id, "Item \$id <\"$i\"> & co", "user\$id@example.com", (\$id * \$seed) / 7, \$id % 3 !== 0);
        }
        return \$rows;
    }
}
PHP);
}
for ($i = 1; $i <= SERVICES; $i++) {
    $repo = ($i - 1) % REPOSITORIES + 1;
    $prevUse = $i > 1 ? "\nuse Fw\\Service\\Service" . ($i - 1) . ";" : '';
    $prevParam = $i > 1 ? ', private Service' . ($i - 1) . ' $previous' : '';
    $prevRows = $i > 1 ? '$this->previous->rows()' : '[]';
    put("$src/Service/Service$i.php", <<<PHP
<?php
declare(strict_types=1);
namespace Fw\Service;
use Fw\Contracts\Service;
use Fw\Repository\Repository$repo;
use Fw\Support\Logger;$prevUse
final class Service$i implements Service
{
    /** @var list<array<string, mixed>>|null */
    private ?array \$rows = null;
    public function __construct(private Repository$repo \$repository, private Logger \$logger$prevParam) {}
    public function rows(): array
    {
        if (\$this->rows !== null) {
            return \$this->rows;
        }
        \$rows = $prevRows;
        foreach (\$this->repository->find(1, $i) as \$entity) {
            \$rows[] = \$entity->toArray();
        }
        \$this->logger->debug('service{n} added {count}', ['{n}' => $i, '{count}' => 1]);
        return \$this->rows = \$rows;
    }
}
PHP);
}
for ($i = 1; $i <= CONTROLLERS; $i++) {
    put("$src/Controller/Controller$i.php", <<<PHP
<?php
declare(strict_types=1);
namespace Fw\Controller;
use Fw\Http\Request;
use Fw\Service\Service100;
use Fw\Support\Arr;
use Fw\Support\Str;
use Fw\View\Renderer;
final class Controller$i
{
    public function __construct(private Service100 \$service, private Renderer \$view) {}
    /** @param array<string, string> \$params */
    public function __invoke(Request \$request, array \$params): string
    {
        \$rows = Arr::sortBy(\$this->service->rows(), 'name');
        \$cards = [];
        foreach (array_slice(\$rows, 0, 20) as \$row) {
            \$cards[] = ['title' => Str::limit(\$row['name'], 24), 'slug' => Str::slug(\$row['name']), 'row' => \$row];
        }
        return \$this->view->render('page', [
            'title' => 'Catalogue $i, page ' . (\$params['page'] ?? '1'),
            'rows' => \$rows,
            'cards' => \$cards,
            'query' => \$request->query,
        ]);
    }
}
PHP);
}

// --- templates, bootstrap, entry point -------------------------------------------------
put("$dir/fw/templates/layout.php", <<<'PHP'
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title><?= $e($title) ?></title></head>
<body>
<header><h1><?= $e($title) ?></h1>
<nav><?php foreach (['Home' => '/', 'Catalogue' => '/catalogue', 'About <us>' => '/about'] as $label => $href): ?>
<a href="<?= $e($href) ?>"><?= $e($label) ?></a>
<?php endforeach ?></nav></header>
<main><?= $content ?></main>
<footer>query: <?= $e(http_build_query($query)) ?></footer>
</body>
</html>
PHP);
put("$dir/fw/templates/page.php", <<<'PHP'
<section class="cards">
<?php foreach ($cards as $card) { $partial('card', $card); } ?>
</section>
<table>
<thead><tr><th>#</th><th>Kind</th><th>Name</th><th>Email</th><th>Price</th><th>Status</th></tr></thead>
<tbody>
<?php foreach ($rows as $n => $row): ?>
<tr class="<?= $n % 2 ? 'odd' : 'even' ?>">
<td><?= $e($row['id']) ?></td><td><?= $e($row['kind']) ?></td><td><?= $e($row['name']) ?></td>
<td><a href="mailto:<?= $e($row['email']) ?>"><?= $e($row['email']) ?></a></td>
<td><?= $e($row['price']) ?></td><td><?= $row['active'] ? 'active' : '<em>inactive</em>' ?></td>
</tr>
<?php endforeach ?>
</tbody>
</table>
PHP);
put("$dir/fw/templates/card.php", <<<'PHP'
<article id="<?= $e($slug) ?>">
<h2><?= $e($title) ?></h2>
<dl><?php foreach ($row as $key => $value): ?><dt><?= $e($key) ?></dt><dd><?= $e(is_bool($value) ? ($value ? 'yes' : 'no') : $value) ?></dd><?php endforeach ?></dl>
</article>
PHP);
$routes = '';
for ($i = 1; $i <= CONTROLLERS; $i++) {
    // The case requests the last route: the router tries all 20 patterns.
    $routes .= "\$router->get('/catalogue$i/{page}', Fw\\Controller\\Controller$i::class);\n";
}
put("$dir/fw/bootstrap.php", <<<PHP
<?php
declare(strict_types=1);
spl_autoload_register(static function (string \$class): void {
    if (strncmp(\$class, 'Fw\\\\', 3) !== 0) {
        return;
    }
    \$file = __DIR__ . '/src/' . str_replace('\\\\', '/', substr(\$class, 3)) . '.php';
    if (is_file(\$file)) {
        require \$file;
    }
});
\$container = new Fw\Container();
\$config = new Fw\Support\Config(['app' => ['name' => 'bench', 'seed' => 3, 'debug' => false]]);
\$container->instance(Fw\Support\Config::class, \$config);
\$container->factory(Fw\View\Renderer::class, static fn (Fw\Container \$c) => new Fw\View\Renderer(__DIR__ . '/templates', \$c->get(Fw\Support\Escaper::class)));
\$router = new Fw\Http\Router();
$routes\$container->instance(Fw\Http\Router::class, \$router);
\$container->instance(Fw\Container::class, \$container);
return \$container->get(Fw\Kernel::class);
PHP);
put("$dir/fw.php", <<<'PHP'
<?php
$kernel = require __DIR__ . '/fw/bootstrap.php';
$kernel->handle(Fw\Http\Request::fromGlobals())->send();
PHP);

$classes = count(glob("$src/*/*.php")) + count(glob("$src/*.php"));
fwrite(STDERR, "[gen_framework] $classes classes, $files files in $dir/fw\n");
